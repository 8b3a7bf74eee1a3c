"""The payload stages of a run: references, templates, schemas and offload.

See docs/contract/storage.md#stages.

One ``Payloads`` per run; the lifecycles call it at their seams (docs/architecture.md "Batch
stages", docs/storage.md):

* ``config(raw)``: Go's ``hydrateConfig`` (traversal guard, references, templates around the
  hydrated values) before the config is decoded (batch, streaming, impulse);
* ``inputs(raw)``: hydrate references, resolve templates (unless
  ``BUBU_SKIP_INPUT_TEMPLATING``), values that came out of storage never evaluated;
* ``validate_inputs`` / ``validate_output``: the EngramTemplate schemas (docs/templates.md#schemas);
* ``output(data)``: offload above ``BUBU_MAX_INLINE_SIZE`` (the storage-off error for an
  oversized output), with Go's three attempts for a store that is unavailable.

Fast paths, so a step without references or templates pays for neither: one pass
(``bubu._runtime.scan``, at C speed on the payload's JSON) decides. A payload that holds no
``$bubu*Ref`` key and no template is returned as it is after the depth checks Go applies to
every payload (``BUBU_MAX_RECURSION_DEPTH``, the ``BUBU_CONFIG_HYDRATION_*`` guard);
``bubu._storage`` and ``bubu._templating`` are not even imported. An output that fits inline
and within the depth limit is not walked by the storage manager. Schema lookups need a
Kubernetes client: without one (local runs) they are skipped with one debug line, as Go skips a
client that cannot ``Get``.

Errors keep Go's wrapping (``failed to hydrate inputs: ...``, ``failed to hydrate config:
...``, ``failed to resolve input templates: ...``, ``failed to dehydrate output ...``) on the
SDK's typed errors, so the StepRun status gets the right type and exit class
(docs/contract/storage.md).

Imports ``bubu._runtime``, ``bubu.errors`` and, only when a payload needs them,
``bubu._storage``, ``bubu._templating`` and ``bubu._schema``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import TYPE_CHECKING, Any, Final, TypeVar

from bubu._runtime import gojson, parse
from bubu._runtime.scan import scan
from bubu.errors import (
    BubuError,
    KubernetesError,
    StorageError,
    StorageRefError,
    StorageUnavailableError,
    TemplateError,
)

if TYPE_CHECKING:
    from bubu._k8s.api import KubeAPI
    from bubu._runtime.context import RunContext
    from bubu._runtime.env import RuntimeEnv
    from bubu._schema import TemplateSchemas
    from bubu._storage.manager import StorageManager

__all__ = ["DEHYDRATE_ATTEMPTS", "Payloads", "output_schema", "prefixed"]

_log = logging.getLogger("bubu.payloads")

#: Go ``dehydrateWithRetry``: three attempts, waiting 1 s then 2 s
DEHYDRATE_ATTEMPTS: Final = 3
_DEHYDRATE_BACKOFF: Final = 1.0

E = TypeVar("E", bound=BaseException)


def prefixed(exc: E, prefix: str) -> E:
    """A copy of ``exc`` (same class and attributes: ``ref``, ``position``, ``retryable``...)
    whose message starts with ``prefix: ``, Go's ``fmt.Errorf("%s: %w")`` on a typed error."""
    new = copy.copy(exc)
    text = f"{prefix}: {exc}"
    new.args = (text, *exc.args[1:])
    if isinstance(new, BubuError):
        new.message = text
    return new


def output_schema(env: RuntimeEnv) -> tuple[str, str]:
    """``($bubuStorageSchema, $bubuStorageSchemaVersion)`` of offloaded outputs (Go
    ``outputSchemaMetadata``)."""
    from bubu._storage.manager import step_schema  # only for an output that goes to storage

    schema = step_schema(
        "output",
        env.steprun_namespace,
        engram=env.engram_name,
        story=env.story_name,
        step=env.step_name,
    )
    version = parse.go_trim_space(env.engram_version) or parse.go_trim_space(env.story_version)
    return schema, version


def _depth_error(limit: int) -> StorageRefError:
    return StorageRefError(f"maximum recursion depth ({limit}) exceeded during hydration")


class Payloads:
    """The payload stages of one run (see the module docstring).

    Args:
        run: the run context (environment, template context, identity).
        kube: the run's Kubernetes client (ConfigMap/Secret refs, schema lookups); ``None``
            in local runs.
        manager: the storage manager to use instead of the process's shared one (harnesses).
        connect: without ``kube``, connect a client the first time a ConfigMap or Secret ref
            needs one (streaming and impulse pods, whose lifecycles need no client before
            ``init``); ``aclose`` closes it.
    """

    def __init__(
        self,
        run: RunContext,
        *,
        kube: KubeAPI | None,
        manager: StorageManager | None = None,
        connect: bool = False,
    ) -> None:
        self.env = run.env
        self.template_context = run.template_context
        self.kube = kube
        self._manager = manager
        self._connect = connect and kube is None
        self._owned: KubeAPI | None = None
        self._schemas: TemplateSchemas | None = None
        ns = parse.go_trim_space(self.env.steprun_namespace)
        step_run = parse.go_trim_space(self.env.steprun_name)
        # Go NamespacedKey(StepRunNamespace, StepRunID): "" when either is missing (names are
        # DNS labels, so filepath.Join has nothing to clean).
        self.step_run_key = f"{ns}/{step_run}" if ns and step_run else ""

    # --- storage --------------------------------------------------------------------------------

    def manager(self) -> StorageManager:
        """The run's storage manager (the process's shared one for this configuration).

        Raises:
            StorageError: the provider cannot be set up.
        """
        if self._manager is None:
            from bubu._storage import shared

            self._manager = shared.manager_for(self.env, kube=self.kube)
        return self._manager

    async def hydrate(self, value: Any) -> Any:
        """Replace every reference in ``value`` (Go ``StorageManager.Hydrate``).

        A value without ``$bubu*Ref`` keys comes back as it is, after the depth check Go's
        hydration applies to every value (the templating pass calls this for its context too).

        Raises:
            StorageError: as ``StorageManager.hydrate`` (the depth limit included).
        """
        limit = self.env.max_recursion_depth
        found = scan(value, limit=limit)
        if not found.refs:
            if found.depth > limit:
                raise _depth_error(limit)
            return value
        if found.kube_refs and self._connect:
            try:
                await self._connect_kube()
            except KubernetesError as exc:
                raise StorageUnavailableError(
                    f"cannot read ConfigMap/Secret references: no Kubernetes client: {exc}"
                ) from exc
        return await self.manager().hydrate(value, step_run_key=self.step_run_key)

    async def _connect_kube(self) -> None:
        from bubu._k8s.client import KubeClient

        self._connect = False
        self.kube = self._owned = await KubeClient.from_env(self.env)
        self._manager = None  # the manager reads ConfigMaps/Secrets through this client

    async def aclose(self) -> None:
        """Close the client ``connect`` opened, if any."""
        owned, self._owned = self._owned, None
        aclose = getattr(owned, "aclose", None)
        if aclose is not None:
            await aclose()

    # --- config ---------------------------------------------------------------------------------

    async def config(self, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """The step config after Go's ``hydrateConfig``, ready to decode.

        Raises:
            TemplateError: the traversal guard (``config rejected before hydration: config
                exceeds max depth 64``) or a template (``failed to resolve config templates:``),
                prefixed ``failed to hydrate config:``.
            StorageError: a reference could not be hydrated, prefixed the same way.
        """
        if not raw:
            return raw
        env = self.env
        guard_depth, guard_nodes = env.config_hydration_max_depth, env.config_hydration_max_nodes
        found = scan(
            raw,
            limit=max(guard_depth, env.max_recursion_depth),
            quick_limit=min(guard_depth, env.max_recursion_depth),
            node_limit=guard_nodes,
        )
        try:
            if found.refs or found.templates:
                from bubu._templating import TemplateLimits, hydrate_config

                return await hydrate_config(
                    raw, self.template_context, storage=self, limits=TemplateLimits.from_env(env)
                )
            # Nothing to hydrate or resolve: only the limits Go enforces on every config.
            if found.depth > guard_depth:
                raise TemplateError(
                    f"config rejected before hydration: config exceeds max depth {guard_depth}"
                )
            if found.nodes > guard_nodes:
                raise TemplateError(
                    f"config rejected before hydration: config exceeds max nodes {guard_nodes}"
                )
            if found.depth > env.max_recursion_depth:
                raise _depth_error(env.max_recursion_depth)
            return raw
        except (StorageError, TemplateError) as exc:
            raise prefixed(exc, "failed to hydrate config") from exc

    # --- inputs ---------------------------------------------------------------------------------

    async def inputs(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        """The step inputs with references hydrated and templates resolved.

        See docs/contract/batch-lifecycle.md#steps.

        Raises:
            StorageError: prefixed ``failed to hydrate inputs:``.
            TemplateError: prefixed ``failed to resolve input templates:``.
        """
        env = self.env
        data = raw if raw is not None else {}
        limit = env.max_recursion_depth
        found = scan(data, limit=limit)
        templating = found.templates and not env.skip_input_templating
        try:
            if found.refs or templating:
                from bubu._templating import TemplateLimits, resolve_inputs

                return await resolve_inputs(
                    data,
                    self.template_context,
                    storage=self,
                    limits=TemplateLimits.from_env(env),
                    skip=env.skip_input_templating,
                )
            if found.depth > limit:
                raise _depth_error(limit)
            return data
        except StorageError as exc:
            raise prefixed(exc, "failed to hydrate inputs") from exc

    # --- schemas --------------------------------------------------------------------------------

    def schemas(self) -> TemplateSchemas | None:
        """The EngramTemplate schemas of this step (looked up once), or ``None`` without a
        Kubernetes client (validation skipped, as Go skips a client that cannot ``Get``)."""
        if self.kube is None:
            return None
        if self._schemas is None:
            from bubu._schema import TemplateSchemas

            env = self.env
            self._schemas = TemplateSchemas.for_engram(
                self.kube,
                namespace=parse.go_trim_space(env.steprun_namespace) or env.namespace,
                engram_name=env.engram_name,
                step_run_name=env.steprun_name,
                timeout=env.k8s_operation_timeout,
            )
        return self._schemas

    async def validate_inputs(self, inputs: dict[str, Any]) -> None:
        """Check the inputs against the EngramTemplate's ``inputSchema``.

        Raises:
            SchemaLookupError: the template could not be read (retryable).
            SchemaValidationError: the inputs break the schema (terminal).
        """
        schemas = self.schemas()
        if schemas is None:
            _log.debug("Schema validation skipped: no Kubernetes client (local run)")
            return
        await schemas.validate_inputs(inputs)

    async def validate_output(self, output: dict[str, Any]) -> None:
        """Check the output against the EngramTemplate's ``outputSchema``.

        Raises:
            SchemaLookupError: the template could not be read (retryable).
            SchemaValidationError: the output breaks the schema (terminal).
        """
        schemas = self.schemas()
        if schemas is None:
            return
        await schemas.validate_output(output)

    # --- output ---------------------------------------------------------------------------------

    def _fits_inline(self, output: dict[str, Any]) -> bool:
        env = self.env
        try:
            data = gojson.marshal(output)
        except ValueError:
            return False  # the manager names what is wrong with it
        if len(data) > env.max_inline_size:
            return False
        limit = env.max_recursion_depth
        if data.count(b"{") + data.count(b"[") <= limit:
            return True  # nesting cannot exceed the number of containers
        return scan(output, limit=limit).depth <= limit

    async def output(self, output: dict[str, Any]) -> Any:
        """Offload what is too large for ``status.output`` (Go ``dehydrateWithRetry``).

        Returns:
            The output with large parts replaced by storage refs (a single ref when the whole
            output went to storage).

        Raises:
            StorageDisabledError: storage is off and the output is above the limit (Go's text:
                ``output size N bytes exceeds inline limit M and storage is disabled; ...``).
            StorageError: the store failed; ``StorageUnavailableError``/``StorageTimeoutError``
                only after three attempts.
        """
        if self._fits_inline(output):
            return output
        schema, version = output_schema(self.env)
        delay = _DEHYDRATE_BACKOFF
        for attempt in range(1, DEHYDRATE_ATTEMPTS + 1):
            try:
                return await self.manager().dehydrate(
                    output, self.step_run_key, schema=schema, schema_version=version
                )
            except StorageError as exc:
                if not exc.retryable:
                    raise prefixed(exc, "failed to dehydrate output") from exc
                if attempt == DEHYDRATE_ATTEMPTS:
                    raise prefixed(
                        exc,
                        f"failed to dehydrate output after {DEHYDRATE_ATTEMPTS} retries "
                        "(storage backend unavailable)",
                    ) from exc
                _log.warning(
                    "Retrying dehydration after failure",
                    extra={"attempt": attempt, "backoff": f"{delay:g}s", "error": str(exc)},
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover
