"""``run_impulse``: the Impulse lifecycle.

See docs/contract/index.md#go-surface, docs/contract/design.md#cancellation-and-shutdown.

The start-up every entry point shares (``bubu._startup``: JSON logs with the secret mask on
every handler, standard output and uncaught exceptions; telemetry switches; the run scope) ->
load the run context -> build the Kubernetes client -> hydrate ``BUBU_STEP_CONFIG`` (storage,
ConfigMap and Secret refs, templates: ``bubu._payloads``) -> check it against the
ImpulseTemplate's ``configSchema`` when the Role can read it -> decode it into the Impulse's
config type -> expand secrets (fails closed) -> ``init(config, secrets)`` -> ``run(client)``
until it returns or a stop is requested. ``start_story`` offloads large inputs when storage is
enabled (``bubu._triggers``).

``client`` is an ``ImpulseClient``: the run's Kubernetes client (``.kube``, what Go passes as
``*k8s.Client``) plus the trigger helpers bound to it (``start_story``, ``stop_story``,
``dispatcher``), the target Story and the run's ``Shutdown``. ``bubu.testkit.ImpulseHarness``
builds the same object over the in-memory cluster.

Shutdown (SIGTERM through ``bubu.run``): the event source stops first - ``run`` is cancelled
inside the stop request itself, so it sees one cancellation and its cleanup is never cut by a
second, and it gets the grace period to finish (close its server; in-flight ``start_story``
calls are idempotent by name, so a redelivered event after a restart is safe) - then the
impulse counters are flushed (docs/impulses.md#shutdown). A clean stop returns 0. Go installs
no signal handler for impulses (docs/contract/batch-lifecycle.md#signals).

Imports ``bubu._startup``, ``bubu._triggers``, ``bubu._dispatcher``, ``bubu._payloads``,
``bubu._schema`` (on use), ``bubu._k8s``, ``bubu._runtime``, ``bubu._aio``, ``bubu.engram`` and
``bubu.errors``. Logger: ``bubu.impulse``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bubu import _startup
from bubu._aio import shutdown as _shutdown
from bubu._dispatcher import StoryDispatcher
from bubu._k8s.api import KubeAPI
from bubu._payloads import Payloads
from bubu._runtime import decode as _decode
from bubu._runtime.env import RuntimeEnv, load_identity
from bubu._runtime.outcome import outcome_for
from bubu._runtime.secrets import Secrets
from bubu._runtime.sources import EnvSource
from bubu._triggers import (
    ImpulseStats,
    StoryTriggers,
    TargetStory,
    TriggerResult,
)
from bubu.engram import Impulse, engram_types
from bubu.errors import BubuError, ContractError, SchemaValidationError

__all__ = ["DEFAULT_STATS_INTERVAL", "ImpulseClient", "run_impulse"]

_log = logging.getLogger("bubu.impulse")

DEFAULT_STATS_INTERVAL = 1.0
"""Seconds between two Impulse status patches (the counters are coalesced in between)."""


class ImpulseClient:
    """What an Impulse's ``run(client)`` gets: the cluster and the trigger helpers of the run.

    Attributes:
        kube: the Kubernetes client (``KubeClient``; the in-memory cluster under the harness).
        dispatcher: a shared ``StoryDispatcher`` (sessions by key, counted in the Impulse status).
        shutdown: the run's stop request; ``await client.shutdown.wait()`` to serve until SIGTERM.
        target: the Impulse's target Story (``BUBU_TARGET_STORY_*``), or None when unset.
        stats: the coalesced Impulse counters, or None outside an Impulse (no
            ``BUBU_IMPULSE_NAME``).
    """

    def __init__(
        self,
        kube: KubeAPI,
        triggers: StoryTriggers,
        *,
        shutdown: _shutdown.Shutdown,
        stats: ImpulseStats | None = None,
        dispatcher: StoryDispatcher | None = None,
    ) -> None:
        self.kube = kube
        self.triggers = triggers
        self.shutdown = shutdown
        self.stats = stats
        self.dispatcher = dispatcher or StoryDispatcher(triggers=triggers, stats=stats)
        who = load_identity(triggers.source)
        self.target: TargetStory | None = (
            TargetStory(who.target_story_name, who.target_story_namespace)
            if who.target_story_name
            else None
        )

    @property
    def namespace(self) -> str:
        """The namespace StoryTriggers are created in (Go ``GetNamespace``)."""
        return self.triggers.client_namespace()

    def _story(self, story_name: str | None) -> tuple[str, str | None]:
        if story_name:
            return story_name, None
        if self.target is None:
            raise ContractError(
                "target story not configured: BUBU_TARGET_STORY_NAME environment variable is "
                "not set",
                variable="BUBU_TARGET_STORY_NAME",
            )
        return self.target.name, self.target.namespace or None

    async def start_story(
        self,
        story_name: str | None = None,
        inputs: Any = None,
        namespace: str | None = None,
        *,
        token: str | None = None,
    ) -> TriggerResult:
        """Start a Story (default: the target Story); see ``bubu.start_story``."""
        name, default_ns = self._story(story_name)
        return await self.triggers.start(name, inputs, namespace or default_ns, token=token)

    async def start_story_with_token(
        self,
        token: str,
        inputs: Any = None,
        story_name: str | None = None,
        namespace: str | None = None,
    ) -> TriggerResult:
        """Start a Story idempotently under ``token``; see ``bubu.start_story_with_token``."""
        name, default_ns = self._story(story_name)
        return await self.triggers.start(name, inputs, namespace or default_ns, token=token)

    async def stop_story(self, story_run_name: str, namespace: str | None = None) -> bool:
        """Ask the operator to cancel a StoryRun; see ``bubu.stop_story``."""
        return await self.triggers.stop(story_run_name, namespace)

    def __repr__(self) -> str:
        return f"ImpulseClient(namespace={self.namespace!r}, target={self.target!r})"


async def _connect(env: RuntimeEnv) -> KubeAPI:
    from bubu._k8s.client import KubeClient

    try:
        return await KubeClient.from_env(env)
    except BubuError as exc:
        raise type(exc)(f"failed to create k8s client: {exc}") from exc


async def _close(kube: Any) -> None:
    aclose = getattr(kube, "aclose", None)
    if aclose is not None:
        await aclose()


async def _validate_config(kube: KubeAPI, env: RuntimeEnv, config: dict[str, Any]) -> None:
    """Check the hydrated config against the ImpulseTemplate's ``configSchema``.

    See docs/templates.md#schemas.

    The Go SDK leaves this to the operator's admission webhook; bubu checks it when the
    Impulse's Role can read the template (an ImpulseTemplate is cluster-scoped, so the
    operator's Role cannot: one debug line, as for engrams; docs/templates.md).
    """
    if not env.impulse_name.strip():
        return
    from bubu._schema import TemplateSchemas

    schemas = TemplateSchemas.for_impulse(
        kube,
        namespace=env.impulse_namespace.strip() or env.namespace,
        impulse_name=env.impulse_name,
        timeout=env.k8s_operation_timeout,
    )
    await schemas.validate_config(config)


async def run_impulse(
    impulse: Impulse[Any],
    *,
    source: EnvSource | None = None,
    shutdown: _shutdown.Shutdown | None = None,
    client: KubeAPI | None = None,
    stats_interval: float = DEFAULT_STATS_INTERVAL,
    secrets: Secrets | None = None,
    on_start: Callable[[ImpulseClient], None] | None = None,
    install_logging: bool = True,
) -> int:
    """Run an Impulse until its ``run`` returns or a stop is requested.

    Args:
        impulse: the Impulse; its config type comes from ``Impulse[Config]``.
        source: where ``BUBU_*`` values are read (``os.environ`` by default).
        shutdown: the stop request (``bubu.run`` passes the one its SIGTERM handler sets).
        client: a Kubernetes client to use instead of connecting (tests, harnesses); it is
            not closed here.
        stats_interval: seconds between two Impulse status patches.
        secrets: use these secrets instead of expanding ``BUBU_SECRET_*`` (harnesses).
        on_start: called with the ``ImpulseClient`` just before ``run`` starts (harnesses).
        install_logging: install the JSON log handler and mask standard output (harnesses
            pass False; the secret mask still goes on the existing handlers).

    Returns:
        0 after ``run`` returned or a clean shutdown; otherwise the exit code of the error
        (1 for most; errors are logged with Go's wrapping, e.g. ``impulse execution failed``).
    """
    config_type, _ = engram_types(impulse, Impulse)
    owned: KubeAPI | None = None
    stats: ImpulseStats | None = None
    stage = "failed to load execution context"
    with _startup.begin(
        "impulse",
        source=source,
        shutdown=shutdown,
        install_logging=install_logging,
        capture_output=install_logging,
    ) as st:
        stop = st.shutdown or _shutdown.Shutdown()
        st.scope.shutdown = stop
        try:
            run_ctx = st.load()
            env = run_ctx.env
            # The client comes first (Go creates it after init): ConfigMap/Secret refs in the
            # config and the ImpulseTemplate's configSchema are read through it.
            stage = "failed to create k8s client"
            kube = client
            if kube is None:
                kube = owned = await _connect(env)
            stage = "failed to hydrate config"
            hydrated = await Payloads(run_ctx, kube=kube).config(run_ctx.config) or {}
            stage = "config schema validation failed"
            await _validate_config(kube, env, hydrated)
            stage = "failed to unmarshal config"
            try:
                config = _decode.decode(hydrated, config_type, strict=env.strict_unmarshal)
            except SchemaValidationError as exc:
                raise SchemaValidationError(f"config: {exc}", path=exc.path) from exc
            stage = "failed to expand secrets"
            run_secrets = st.expand_secrets(secrets)
            stage = "impulse initialization failed"
            await impulse.init(config, run_secrets)
            if env.impulse_name:
                stats = ImpulseStats(
                    kube, env.impulse_name, env.impulse_namespace or None, interval=stats_interval
                )
            triggers = StoryTriggers(kube, st.source, stats=stats)
            facade = ImpulseClient(kube, triggers, shutdown=stop, stats=stats)
            st.scope.kube = kube
            st.scope.provide(triggers)
            st.scope.provide(facade.dispatcher)
            if stats is not None:
                st.scope.provide(stats)
            stage = "impulse execution failed"
            if on_start is not None:
                on_start(facade)
            with st.activate():
                await _serve(impulse, facade, stop)
            return 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = outcome_for(exc)
            # Inside the guard: the line (and a traceback for non-SDK errors) is masked.
            text = str(exc)
            if not text.startswith(stage):
                text = f"{stage}: {text}"
            _log.error("%s", text, exc_info=not isinstance(exc, BubuError))
            return int(outcome.exit_code) or 1
        finally:
            if stats is not None:
                await stats.aclose()
            if owned is not None:
                await _close(owned)


async def _run_until_stopped(
    impulse: Impulse[Any], client: ImpulseClient, stop: _shutdown.Shutdown
) -> None:
    # The stop request cancels run() from inside request() itself, before any task wakes on
    # client.shutdown. Cancelled one loop turn later, a run() that watches client.shutdown has
    # already woken and is inside its cleanup (closing its connections), and the cancellation
    # would cut that cleanup short. A request made before run() starts lands at run()'s first
    # await, so its finally blocks still run.
    task = asyncio.current_task()
    assert task is not None

    def cancel(reason: str) -> None:
        task.cancel(f"stop requested ({reason})")

    stop.add_callback(cancel)
    try:
        await impulse.run(client)
    finally:
        stop.remove_callback(cancel)


async def _serve(impulse: Impulse[Any], client: ImpulseClient, stop: _shutdown.Shutdown) -> None:
    loop = asyncio.get_running_loop()
    work = loop.create_task(_run_until_stopped(impulse, client, stop), name="bubu.impulse.run")
    waiter = loop.create_task(stop.wait(), name="bubu.impulse.shutdown")
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        waiter.cancel()
        raise
    if stop.requested:
        _log.info("shutdown requested (%s); stopping the impulse", stop.reason)
    if not work.done():
        # The stop request cancelled run (_run_until_stopped): it has the grace to end.
        done, _ = await asyncio.wait({work}, timeout=stop.grace)
        if not done:
            _log.warning("impulse run did not stop within %.1fs after cancellation", stop.grace)
            return
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    if work.cancelled() and stop.requested:
        return
    work.result()  # re-raise what run raised
