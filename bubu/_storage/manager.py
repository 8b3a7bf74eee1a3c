"""``StorageManager``: hydration of references and offload of large payloads.

See docs/contract/storage.md.

Byte-for-byte the operator's storage manager (bobrapet ``pkg/storage`` v0.1.13), as
docs/storage.md describes: the same offload decisions (``BUBU_MAX_INLINE_SIZE``, the 256 KiB
bulk rule, the depth boundary), the same object paths (``<prefix>/<id>/<dotted.path>.json``)
and the same stored bytes (``{"contentType":"json"|"raw","data":...}``), with typed errors
from ``bubu.errors`` instead of Go's wrapped strings.

Memory: a large string offloads as a stream of encoded pieces (never its whole encoding at
once), and hydrating a large ``raw`` object decodes it piece by piece while the read buffer is
released, so a 64 MiB string costs well under twice its size (tests/unit/storage/test_rss.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from bubu._runtime import gojson, parse, refs
from bubu._storage.store import READ_CHUNK, Chunks, FileStore, Store, WriteMeta
from bubu.errors import (
    ForbiddenError,
    KubernetesError,
    NotFoundError,
    StorageAccessError,
    StorageDisabledError,
    StorageError,
    StorageNotFoundError,
    StorageRefError,
    StorageTimeoutError,
    StorageUnavailableError,
)

if TYPE_CHECKING:
    from bubu._k8s.api import KubeAPI
    from bubu._runtime.env import RuntimeEnv, StorageConfig

__all__ = [
    "BULK_OFFLOAD_SIZE",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_INLINE_SIZE",
    "DEFAULT_TIMEOUT",
    "StorageManager",
    "input_offload",
    "namespaced_key",
    "open_store",
]

_log = logging.getLogger("bubu.storage")

DEFAULT_MAX_INLINE_SIZE: Final = 1024
DEFAULT_MAX_DEPTH: Final = 10
DEFAULT_TIMEOUT: Final = 300.0
#: a partly offloaded map or list above this is offloaded whole (Go ``maxBulkOffloadSize``)
BULK_OFFLOAD_SIZE: Final = 256 * 1024

_JSON: Final = "json"
_RAW: Final = "raw"
_REF_CONTENT_TYPE: Final = {_JSON: "application/json", _RAW: "text/plain"}
#: below this an offloaded object is built in memory; above, it is streamed
_STREAM_THRESHOLD: Final = 1 << 20


_SCOPE: Final = "github.com/bubustack/bobrapet/pkg/storage"
_HYDRATION_HISTOGRAM: Final = "bobrapet.storage.hydration.size_bytes"
_DEHYDRATION_HISTOGRAM: Final = "bobrapet.storage.dehydration.size_bytes"
_histograms: dict[str, Any] = {}


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    """A span named and shaped as Go's, when OpenTelemetry is already in use.

    See docs/contract/storage.md.

    Storage must not be what loads OpenTelemetry (a local batch run stays light,
    tests/test_import.py): without it in ``sys.modules`` no provider was set up and a span
    would be a no-op anyway.
    """
    if "opentelemetry.trace" not in sys.modules:
        yield None
        return
    from opentelemetry import trace

    from bubu import _telemetry

    with _telemetry.tracer(_SCOPE).start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
            raise


def _event(span: Any, name: str, **attributes: Any) -> None:
    if span is not None:
        span.add_event(name, attributes=attributes)


def _record_size(histogram: str, value: Any, ident: str) -> int:
    """Record the JSON size as Go's histograms do; returns it for the span event."""
    if "opentelemetry.metrics" not in sys.modules:
        return 0
    try:
        size = len(gojson.marshal(value))
    except ValueError:
        return 0
    from bubu import _telemetry

    instrument = _histograms.get(histogram)
    if instrument is None:
        # Go's storage package records these on its own meter, so a dashboard that selects
        # them by instrumentation scope finds bubu's too (docs/observability.md#metrics).
        instrument = _telemetry.meter(_SCOPE).create_histogram(histogram, unit="By")
        _histograms[histogram] = instrument
    instrument.record(size, {"steprun_id": ident})
    return size


class _StoredObject(msgspec.Struct):
    contentType: str
    data: msgspec.Raw = msgspec.Raw(b"null")


def namespaced_key(namespace: str, ident: str) -> str:
    """``<namespace>/<id>`` (Go ``NamespacedKey``); ``""`` when either part is blank."""
    ns, key = parse.go_trim_space(namespace), parse.go_trim_space(ident)
    if not ns or not key:
        return ""
    return refs.clean_path(f"{ns}/{key}")


def step_schema(suffix: str, namespace: str, *, engram: str, story: str, step: str) -> str:
    """``bubu://.../<suffix>``: the schema id of what a step stores (its ``output``, its
    ``logs``; Go ``outputSchemaMetadata``, ``logSchemaMetadata``); ``""`` when the identity is
    too thin to name one."""
    ns, eng, story, step = (parse.go_trim_space(v) for v in (namespace, engram, story, step))
    if ns and eng:
        return f"bubu://engram/{ns}/{eng}/{suffix}"
    if ns and story and step:
        return f"bubu://story/{ns}/{story}/steps/{step}/{suffix}"
    if story and step:
        return f"bubu://story/{story}/steps/{step}/{suffix}"
    return ""


def open_store(config: StorageConfig) -> Store:
    """Build the provider ``config`` names (``file``, or ``s3`` through the ``bubu[s3]`` extra)."""
    if config.provider == "file":
        return FileStore(config.path)
    if config.s3 is None:  # load_env always fills it for s3
        raise StorageError("s3 storage is enabled but has no configuration")
    try:
        from bubu._storage.s3 import S3Store
    except ImportError as exc:
        raise StorageError(
            f"BUBU_STORAGE_PROVIDER=s3 needs the bubu[s3] extra: pip install 'bubu[s3]' ({exc})"
        ) from None
    return S3Store(config.s3)


@dataclass(frozen=True, slots=True)
class _Payload:
    """An encoded stored object: in memory, or a re-iterable stream of pieces."""

    content_type: str
    data: bytes | None
    parts: tuple[bytes, Any] | None = None  # (prefix, string) for a streamed raw string

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.parts is not None
        prefix, text = self.parts
        yield prefix
        yield from gojson.encode_string_chunks(text)
        yield b"}"


class StorageManager:
    """Hydrates references and offloads large payloads through one ``Store``.

    Args:
        store: the provider, or ``None`` when storage is disabled.
        max_inline_size: ``BUBU_MAX_INLINE_SIZE`` (offload above it; 0 offloads everything).
        max_depth: ``BUBU_MAX_RECURSION_DEPTH``.
        timeout: ``BUBU_STORAGE_TIMEOUT`` in seconds, per public operation.
        output_prefix: ``BUBU_STORAGE_OUTPUT_PREFIX``.
        input_prefix: ``BUBU_STORAGE_INPUT_PREFIX``.
        workload_namespace: where ConfigMap/Secret refs resolve (``RuntimeEnv.workload_namespace``).
        kube: the client for ConfigMap/Secret refs (``None``: such a ref is an error).
    """

    def __init__(
        self,
        store: Store | None,
        *,
        max_inline_size: int = DEFAULT_MAX_INLINE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        timeout: float = DEFAULT_TIMEOUT,
        output_prefix: str = "outputs",
        input_prefix: str = "inputs",
        workload_namespace: str = "",
        kube: KubeAPI | None = None,
    ) -> None:
        self.store = store
        self.max_inline_size = max_inline_size
        self.max_depth = max_depth if max_depth > 0 else DEFAULT_MAX_DEPTH
        self.timeout = timeout
        self.output_prefix = output_prefix
        self.input_prefix = input_prefix
        self.workload_namespace = workload_namespace
        self.kube = kube

    @classmethod
    def from_env(cls, env: RuntimeEnv, *, kube: KubeAPI | None = None) -> StorageManager:
        """Build the manager a run's environment describes (``env.storage`` None: disabled).

        Raises:
            StorageError: the provider cannot be set up (``bubu[s3]`` missing, bad root).
        """
        cfg = env.storage
        return cls(
            open_store(cfg) if cfg is not None else None,
            max_inline_size=env.max_inline_size,
            max_depth=env.max_recursion_depth,
            timeout=cfg.timeout if cfg is not None else DEFAULT_TIMEOUT,
            output_prefix=cfg.output_prefix if cfg is not None else "outputs",
            input_prefix=cfg.input_prefix if cfg is not None else "inputs",
            workload_namespace=env.workload_namespace,
            kube=kube,
        )

    @property
    def enabled(self) -> bool:
        """Whether a store is configured."""
        return self.store is not None

    def __repr__(self) -> str:
        return (
            f"StorageManager(store={self.store!r}, max_inline_size={self.max_inline_size}, "
            f"max_depth={self.max_depth})"
        )

    async def aclose(self) -> None:
        """Close the store's connections."""
        if self.store is not None:
            await self.store.aclose()

    # --- timeouts -------------------------------------------------------------------------------

    async def _bounded(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await coro
        except TimeoutError:
            raise StorageTimeoutError(
                "storage operation timed out after "
                f"{parse.format_go_duration(self.timeout)} (BUBU_STORAGE_TIMEOUT)"
            ) from None

    def _require_store(self) -> Store:
        if self.store is None:
            raise StorageDisabledError("storage is disabled")
        return self.store

    # --- hydrate --------------------------------------------------------------------------------

    async def hydrate(
        self, data: Any, *, allow_kube_refs: bool = True, step_run_key: str = ""
    ) -> Any:
        """Replace every reference in ``data`` by what it points to (Go ``Hydrate``).

        Storage refs are read, decoded and hydrated again (refs inside offloaded objects
        resolve too), then their ``$bubuStoragePath`` selector is applied. ConfigMap and
        Secret refs are read from the API server (with ``allow_kube_refs``). Every map or
        list level counts towards ``max_depth``, refs or not. Returns new containers;
        ``data`` is not modified.

        Raises:
            StorageDisabledError: a storage ref with storage disabled.
            StorageRefError: a bad path, selector or kube ref, too deep, or cyclic.
            StorageNotFoundError: a missing object, ConfigMap, Secret or key (named).
            StorageAccessError, StorageUnavailableError: the store or API server failed.
            StorageTimeoutError: past ``BUBU_STORAGE_TIMEOUT``.
        """
        name = "storage.Hydrate" if allow_kube_refs else "storage.HydrateStorageRefsOnly"
        attrs: dict[str, Any] = {
            "storage.enabled": self.enabled,
            "storage.allowKubeRefs": allow_kube_refs,
        }
        if step_run_key:
            attrs["storage.stepRunID"] = step_run_key
        with _span(name, attrs) as span:
            try:
                if self.store is None and refs.contains_storage_ref(data, self.max_depth):
                    raise StorageDisabledError(
                        "found storage reference in inputs but storage is disabled "
                        "(set BUBU_STORAGE_PROVIDER=s3 or file)"
                    )
                result = await self._bounded(
                    self._hydrate_value(data, 0, allow_kube_refs, frozenset())
                )
            except StorageError as exc:
                _event(span, "hydrate.error", error=str(exc))
                raise
            if result is not None:
                size = _record_size(_HYDRATION_HISTOGRAM, result, step_run_key)
                _event(span, "hydrate.success", size_bytes=size)
            return result

    async def hydrate_storage_refs_only(self, data: Any, *, step_run_key: str = "") -> Any:
        """``hydrate`` leaving ConfigMap and Secret refs as they are (Go
        ``HydrateStorageRefsOnly``)."""
        return await self.hydrate(data, allow_kube_refs=False, step_run_key=step_run_key)

    async def _hydrate_value(
        self, value: Any, depth: int, kube_refs: bool, seen: frozenset[int]
    ) -> Any:
        if depth > self.max_depth:
            raise StorageRefError(
                f"maximum recursion depth ({self.max_depth}) exceeded during hydration"
            )
        if isinstance(value, Mapping):
            if id(value) in seen:
                raise StorageRefError("cyclic structure found during hydration")
            selector = refs.storage_ref_selector(value)
            if selector is not None:
                path, sub = selector
                return await self._hydrate_ref(path, sub, depth, kube_refs, seen)
            if kube_refs:
                kref = refs.kube_ref_of(value)
                if kref is not None:
                    return await self._hydrate_kube_ref(*kref)
            inner = seen | {id(value)}
            return {
                k: await self._hydrate_value(v, depth + 1, kube_refs, inner)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            if id(value) in seen:
                raise StorageRefError("cyclic structure found during hydration")
            inner = seen | {id(value)}
            return [await self._hydrate_value(v, depth + 1, kube_refs, inner) for v in value]
        return value

    async def _hydrate_ref(
        self, path: str, sub: str, depth: int, kube_refs: bool, seen: frozenset[int]
    ) -> Any:
        store = self.store
        if store is None:
            raise StorageDisabledError(
                "found storage reference in inputs but storage is disabled "
                "(set BUBU_STORAGE_PROVIDER=s3 or file)",
                ref=path,
            )
        try:
            refs.validate_storage_path(path)
        except StorageRefError as exc:
            raise StorageRefError(
                f"failed to read offloaded data from '{path}': {exc}", ref=path
            ) from None
        loaded = await self._read_stored(store, path)
        data = await self._hydrate_value(loaded, depth + 1, kube_refs, seen)
        if not parse.go_trim_space(sub):
            return data
        try:
            selected = refs.resolve_selector(data, sub)
        except StorageRefError as exc:
            raise StorageRefError(
                f"failed to resolve storage path '{sub}' in '{path}': {exc}", ref=path
            ) from None
        return await self._hydrate_value(selected, depth + 1, kube_refs, seen)

    async def _read_stored(self, store: Store, path: str) -> Any:
        key = refs.clean_path(path)
        chunks = store.read(key).__aiter__()
        try:
            try:
                first = await anext(chunks, b"")
                if len(first) >= READ_CHUNK and first.startswith(_RAW_PREFIX):
                    return await _decode_raw_stream(first, chunks)
                buf = bytearray(first)
                del first
                async for chunk in chunks:
                    buf += chunk
            except StorageError as exc:
                exc.ref = exc.ref or path
                raise _with_prefix(exc, f"failed to read offloaded data from '{path}'") from None
            obj = msgspec.json.decode(buf, type=_StoredObject)
            del buf
            if obj.contentType == _JSON:
                return msgspec.json.decode(obj.data)
            if obj.contentType == _RAW:
                return msgspec.json.decode(obj.data, type=str)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StorageError(
                f"failed to unmarshal stored object from '{path}', content may be malformed: {exc}",
                ref=path,
            ) from None
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        raise StorageError(
            f"unknown content type '{obj.contentType}' in stored object '{path}'", ref=path
        )

    async def _hydrate_kube_ref(self, kind: refs.RefKind, raw: Any) -> Any:
        ref = refs.parse_kube_ref(kind, raw, self.workload_namespace)
        from bubu._k8s.resources import CONFIG_MAP, SECRET

        label = "ConfigMap" if kind == "configmap" else "Secret"
        if self.kube is None:
            raise StorageError(
                f"cannot read {label} {ref.namespace}/{ref.name}: no Kubernetes client "
                "(references to ConfigMaps and Secrets need a cluster)",
                ref=str(ref),
            )
        try:
            obj = await self.kube.get(
                CONFIG_MAP if kind == "configmap" else SECRET, ref.name, ref.namespace
            )
        except NotFoundError:
            raise StorageNotFoundError(
                f"failed to read {label} {ref.namespace}/{ref.name}: not found", ref=str(ref)
            ) from None
        except ForbiddenError:
            plural = "configmaps" if kind == "configmap" else "secrets"
            raise StorageAccessError(
                f"failed to read {label} {ref.namespace}/{ref.name}: forbidden (the pod's "
                f'Role needs "get" on {plural})',
                ref=str(ref),
            ) from None
        except KubernetesError as exc:
            raise StorageUnavailableError(
                f"failed to read {label} {ref.namespace}/{ref.name}: {exc}", ref=str(ref)
            ) from None
        values = obj.get("data") or {}
        if ref.key not in values:
            which = "ConfigMap" if kind == "configmap" else "secret"
            raise StorageNotFoundError(
                f"{which} {ref.namespace}/{ref.name} missing key {parse.go_quote(ref.key)}",
                ref=str(ref),
            )
        value = values[ref.key]
        if kind == "secret":
            try:
                raw_bytes = base64.b64decode(value or "", validate=True)
            except (binascii.Error, ValueError):
                raise StorageError(
                    f"secret {ref.namespace}/{ref.name} key {parse.go_quote(ref.key)} is not "
                    "valid base64",
                    ref=str(ref),
                ) from None
        else:
            raw_bytes = str(value).encode()
        return refs.decode_ref_value(raw_bytes, ref)

    # --- dehydrate ------------------------------------------------------------------------------

    def _disabled_size_error(self, data: Any) -> None:
        try:
            size = len(gojson.marshal(data))
        except ValueError:
            return
        if size > self.max_inline_size:
            # Go's text, without the "%!(EXTRA ...)" its surplus Errorf arguments append.
            raise StorageDisabledError(
                f"output size {size} bytes exceeds inline limit {self.max_inline_size} and "
                "storage is disabled; either enable storage (BUBU_STORAGE_PROVIDER=s3|file), "
                f"increase limit (BUBU_MAX_INLINE_SIZE={self.max_inline_size} or higher), or "
                "reduce output size"
            )

    async def dehydrate(
        self, data: Any, step_run_key: str, *, schema: str = "", schema_version: str = ""
    ) -> Any:
        """Offload what is too large to stay inline in a StepRun output (Go ``Dehydrate``).

        Args:
            data: the output (plain JSON data).
            step_run_key: ``namespaced_key(StepRun namespace, StepRun name)``.
            schema, schema_version: written into each ref (``$bubuStorageSchema``...).

        Returns:
            ``data`` with large parts replaced by storage refs (a single ref when the root
            itself is offloaded).

        Raises:
            StorageDisabledError: storage is disabled and the output is above the limit.
            StorageRefError: the data is not JSON (NaN, a cycle...), named by JSON path.
            StorageError and subclasses: the write failed.
        """
        attrs = {"storage.enabled": self.enabled, "storage.stepRunID": step_run_key}
        with _span("storage.Dehydrate", attrs) as span:
            try:
                if self.store is None:
                    self._disabled_size_error(data)
                    return data
                result = await self._bounded(
                    self._dehydrate_root(
                        data, step_run_key, self.output_prefix, schema, schema_version
                    )
                )
            except StorageError as exc:
                _event(span, "dehydrate.error", error=str(exc))
                raise
            if data is not None:
                size = _record_size(_DEHYDRATION_HISTOGRAM, data, step_run_key)
                _event(span, "dehydrate.success", size_bytes=size)
            return result

    async def dehydrate_inputs(
        self,
        data: Any,
        story_run_key: str,
        *,
        max_inline_size: int | None = None,
        schema: str = "",
        schema_version: str = "",
    ) -> Any:
        """Offload StoryTrigger inputs (Go ``DehydrateInputs``; prefix ``inputs``).

        The same algorithm as ``dehydrate``; afterwards, a result still above the limit is
        offloaded whole as ``<prefix>/<id>/input.json``.

        Args:
            max_inline_size: overrides the manager's limit when > 0
                (``DehydrateInputsWithMaxInlineSize``).

        Raises:
            As ``dehydrate``.
        """
        limit = (
            max_inline_size
            if max_inline_size is not None and max_inline_size > 0
            else self.max_inline_size
        )
        manager = self
        if limit != self.max_inline_size:
            manager = copy.copy(self)
            manager.max_inline_size = limit
        attrs = {"storage.enabled": self.enabled, "storage.storyRunID": story_run_key}
        with _span("storage.DehydrateInputs", attrs) as span:
            try:
                result = await manager._dehydrate_inputs(
                    data, story_run_key, schema, schema_version
                )
            except StorageError as exc:
                _event(span, "dehydrate.inputs.error", error=str(exc))
                raise
            if data is not None:
                size = _record_size(_DEHYDRATION_HISTOGRAM, data, story_run_key)
                _event(span, "dehydrate.inputs.success", size_bytes=size)
            return result

    async def _dehydrate_inputs(
        self, data: Any, story_run_key: str, schema: str, schema_version: str
    ) -> Any:
        manager = self
        if manager.store is None:
            manager._disabled_size_error(data)
            return data

        async def run() -> Any:
            result = await manager._dehydrate_root(
                data, story_run_key, manager.input_prefix, schema, schema_version
            )
            if result is not None:
                encoded = _marshal(result)
                if len(encoded) > manager.max_inline_size:
                    result = await manager._offload(
                        _Payload(_JSON, _stored(_JSON, encoded)),
                        story_run_key,
                        "input",
                        manager.input_prefix,
                        schema=schema,
                        schema_version=schema_version,
                    )
            return result

        return await manager._bounded(run())

    async def _dehydrate_root(
        self, data: Any, ident: str, prefix: str, schema: str, schema_version: str
    ) -> Any:
        try:
            prepared = gojson.prepare(data)
        except ValueError as exc:
            raise StorageRefError(f"failed to encode output: {exc}") from None
        info: dict[int, tuple[int, bool, int]] = {}
        _measure(prepared, self.max_inline_size, info)
        walker = _Dehydrator(self, ident, prefix, schema=schema, version=schema_version, info=info)
        return (await walker.value(data, prepared, "", 0))[0]

    async def offload_value(
        self,
        value: Any,
        ident: str,
        key: str = "",
        *,
        prefix: str | None = None,
        schema: str = "",
        schema_version: str = "",
    ) -> dict[str, str]:
        """Store ``value`` whole as one object and return its storage ref.

        The object is what dehydration writes for a value above the limit: a string as
        ``raw``, anything else as ``json``, at ``<prefix>/<ident>/<key>.json``
        (``output.json`` without a key; ``prefix`` defaults to the output prefix). Tests and
        local runs use it to stand in for an earlier step's offloaded output.

        Raises:
            StorageDisabledError: storage is disabled.
            StorageRefError: the value is not JSON, or the path is invalid.
            StorageError and subclasses: the write failed.
        """
        if isinstance(value, str):
            payload = _string_payload(value)
        else:
            payload = _Payload(_JSON, _stored(_JSON, _marshal(value)))
        return dict(
            await self._bounded(
                self._offload(
                    payload,
                    ident,
                    key,
                    self.output_prefix if prefix is None else prefix,
                    schema=schema,
                    schema_version=schema_version,
                )
            )
        )

    async def _offload(
        self,
        payload: _Payload,
        ident: str,
        key_prefix: str,
        path_prefix: str,
        *,
        schema: str,
        schema_version: str,
    ) -> dict[str, str]:
        store = self._require_store()
        file_name = f"{key_prefix}.json" if key_prefix else "output.json"
        path = refs.clean_path(f"{path_prefix}/{ident}/{file_name}")
        try:
            refs.validate_storage_path(path)
        except StorageRefError as exc:
            raise StorageRefError(f"invalid storage path for offload: {exc}", ref=path) from None
        meta = _meta_for(payload, "application/json")
        try:
            await store.write(
                path, payload.data if payload.data is not None else _aiter(payload), meta
            )
        except StorageError as exc:
            exc.ref = exc.ref or path
            raise _with_prefix(
                exc, f"failed to write offloaded value for key '{key_prefix}'"
            ) from None
        ref = {
            refs.STORAGE_REF_KEY: path,
            refs.STORAGE_CONTENT_TYPE_KEY: _REF_CONTENT_TYPE[payload.content_type],
        }
        if schema:
            ref[refs.STORAGE_SCHEMA_KEY] = schema
        if schema_version:
            ref[refs.STORAGE_SCHEMA_VERSION_KEY] = schema_version
        return ref

    # --- blobs ----------------------------------------------------------------------------------

    async def write_blob(
        self, path: str, data: Chunks, content_type: str = "application/octet-stream"
    ) -> None:
        """Store bytes at ``path`` with MD5/SHA-256 integrity metadata (Go ``WriteBlob``).

        ``data`` may be chunks (sync or async): they are hashed on a first pass when they can
        be iterated twice (bytes, lists), otherwise written without the checksums.

        Raises:
            StorageDisabledError, StorageRefError, StorageError and subclasses.
        """
        store = self._require_store()
        _validate_blob_path(path)
        meta = WriteMeta(content_type or "application/octet-stream", -1)
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            meta = WriteMeta(
                meta.content_type,
                len(raw),
                base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode(),
                base64.b64encode(hashlib.sha256(raw).digest()).decode(),
            )
            data = raw
        elif isinstance(data, list | tuple):
            meta = _meta_for_chunks(data, meta.content_type)
        key = refs.clean_path(path)

        async def run() -> None:
            try:
                await store.write(key, data, meta)
            except StorageError as exc:
                exc.ref = exc.ref or path
                raise _with_prefix(exc, "failed to write blob") from None

        await self._bounded(run())

    async def read_blob(self, path: str) -> bytes:
        """Read the whole object at ``path`` (Go ``ReadBlob``); see ``open_blob`` to stream."""
        store = self._require_store()
        _validate_blob_path(path)

        async def run() -> bytes:
            return b"".join([chunk async for chunk in self._read_chunks(store, path)])

        result: bytes = await self._bounded(run())
        return result

    async def open_blob(self, path: str) -> AsyncIterator[bytes]:
        """Yield the object at ``path`` in chunks (bounded memory); each chunk waits at most
        ``BUBU_STORAGE_TIMEOUT``."""
        store = self._require_store()
        _validate_blob_path(path)
        it = self._read_chunks(store, path).__aiter__()
        while True:
            try:
                chunk = await self._bounded(anext(it))
            except StopAsyncIteration:
                return
            yield chunk

    async def _read_chunks(self, store: Store, path: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in store.read(refs.clean_path(path)):
                yield chunk
        except StorageError as exc:
            exc.ref = exc.ref or path
            raise _with_prefix(exc, "failed to read blob") from None

    async def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (Go ``List``)."""
        store = self._require_store()
        try:
            refs.validate_storage_path(prefix)
        except StorageRefError as exc:
            raise StorageRefError(f"invalid storage prefix: {exc}", ref=prefix) from None
        result: list[str] = await self._bounded(store.list(refs.clean_path(prefix)))
        return result

    async def delete(self, path: str) -> None:
        """Remove the object at ``path`` (Go ``Delete``)."""
        store = self._require_store()
        _validate_blob_path(path)
        await self._bounded(store.delete(refs.clean_path(path)))


# --- dehydration walk ---------------------------------------------------------------------------


class _Dehydrator:
    """One dehydration: walks the original value and its ``gojson.prepare``d twin together.

    Each step returns ``(result, size, has_ref)``: the dehydrated value, the length of its Go
    JSON encoding, and whether it is or holds a storage ref (Go's ``containsStorageRef`` on
    the result). Sizes add up from the leaves, so a value is encoded only when it is written,
    instead of once per nesting level as in Go; the decisions are the same.
    """

    def __init__(
        self,
        manager: StorageManager,
        ident: str,
        prefix: str,
        *,
        schema: str,
        version: str,
        info: dict[int, tuple[int, bool, int]],
    ) -> None:
        self.m = manager
        self.ident = ident
        self.prefix = prefix
        self.schema = schema
        self.version = version
        self.info = info

    async def offload(self, payload: _Payload, key: str) -> tuple[Any, int, bool]:
        ref = await self.m._offload(
            payload, self.ident, key, self.prefix, schema=self.schema, schema_version=self.version
        )
        return ref, len(_marshal(ref)), True

    async def offload_json(self, prep: Any, key: str) -> tuple[Any, int, bool]:
        return await self.offload(_Payload(_JSON, _stored(_JSON, _marshal(prep, True))), key)

    async def value(self, orig: Any, prep: Any, key: str, depth: int) -> tuple[Any, int, bool]:
        limit = self.m.max_inline_size
        if depth > self.m.max_depth:
            # Past the limit the subtree goes to storage whole (Go: graceful degradation).
            return await self.offload_json(prep, key)
        if isinstance(orig, Mapping):
            return await self.container(orig.items(), orig, prep, key, depth, mapping=True)
        if isinstance(orig, list | tuple):
            return await self.container(enumerate(orig), orig, prep, key, depth, mapping=False)
        if isinstance(orig, str):
            if gojson.utf8_len(orig) <= limit:
                return orig, _string_json_len(orig), False
            return await self.offload(_string_payload(orig), key)
        size = _scalar_json_len(prep)
        if size <= limit:
            return orig, size, False
        return await self.offload_json(prep, key)

    async def container(
        self, items: Any, orig: Any, prep: Any, key: str, depth: int, *, mapping: bool
    ) -> tuple[Any, int, bool]:
        info = self.info.get(id(prep))
        if info is not None and depth + info[2] <= self.m.max_depth:
            size, holds_ref, _ = info
            # No depth boundary below and no ref inside: when the whole container fits, none
            # of its children can go to storage, and Go keeps it as it is.
            if size <= self.m.max_inline_size and not holds_ref:
                return orig, size, False
        out: Any = {} if mapping else []
        had_ref = False
        size = 2  # the brackets
        count = 0
        twin = prep if isinstance(prep, Mapping if mapping else list | tuple) else orig
        for k, v in items:
            child_key = f"{key}.{k}" if key else str(k)
            dv, dsize, dref = await self.value(v, twin[k], child_key, depth + 1)
            had_ref = had_ref or dref
            size += dsize
            if mapping:
                size += _string_json_len(k) + 1  # "key":
                out[k] = dv
            else:
                out.append(dv)
            count += 1
        size += max(count - 1, 0)  # commas
        if not had_ref:
            if size > self.m.max_inline_size:
                return await self.offload_json(prep, key)
            # A ref map the caller passed through is data here, but a ref to the parent.
            return out, size, mapping and refs.is_storage_ref(orig)
        # Children went to storage, but many small inline ones can still add up: past
        # 256 KiB the original goes to storage as one object (Go maxBulkOffloadSize).
        if size > BULK_OFFLOAD_SIZE:
            return await self.offload_json(prep, key)
        return out, size, True


_PLAIN_ENCODER: Final = msgspec.json.Encoder()
#: Go escapes these and msgspec does not: extra bytes per occurrence
_HTML_EXTRA: Final = (("<", 5), (">", 5), ("&", 5), ("\u2028", 3), ("\u2029", 3))


def _measure(
    value: Any, limit: int, info: dict[int, tuple[int, bool, int]]
) -> tuple[int, bool, int]:
    """Go JSON size, "holds a storage ref" and nesting height of a prepared value; containers
    are recorded in ``info`` by ``id`` (the tree is acyclic: ``prepare`` checked).

    A string longer than ``limit`` gets a lower bound (it goes to storage whatever its exact
    size, and encoding a huge one here would cost its size in memory).
    """
    kind = type(value)
    if kind is str:
        return (len(value) + 2 if len(value) > limit else _string_json_len(value)), False, 0
    if kind is dict:
        # {"k":v,"k":v}: braces, a colon per entry, commas between entries
        size, ref, height = 2 + len(value) + (len(value) - 1 if value else 0), False, 0
        for k, v in value.items():
            vs, vr, vh = _measure(v, limit, info)
            size += vs + _string_json_len(k)
            if vr:
                ref = True
            height = max(height, vh)
        if not ref and refs.is_storage_ref(value):
            ref = True
        result = (size, ref, height + 1)
        info[id(value)] = result
        return result
    if kind is list or kind is tuple:
        size, ref, height = 2 + (len(value) - 1 if value else 0), False, 0
        for v in value:
            vs, vr, vh = _measure(v, limit, info)
            size += vs
            if vr:
                ref = True
            height = max(height, vh)
        result = (size, ref, height + 1)
        info[id(value)] = result
        return result
    return _scalar_json_len(value), False, 0


def _string_json_len(text: str) -> int:
    """Length of Go's JSON encoding of ``text`` (msgspec's, plus Go's HTML escapes)."""
    try:
        size = len(_PLAIN_ENCODER.encode(text))
    except UnicodeEncodeError:
        return len(gojson.marshal(text))
    for ch, extra in _HTML_EXTRA:
        if ch in text:
            size += extra * text.count(ch)
    return size


def _scalar_json_len(prep: Any) -> int:
    if prep is None or prep is True:
        return 4
    if prep is False:
        return 5
    if type(prep) is int:
        return len(str(prep)) if -(10**18) < prep < 10**18 else len(_marshal(prep, True))
    if isinstance(prep, msgspec.Raw):
        return len(prep)
    return len(_marshal(prep, True))


def _marshal(value: Any, prepared: bool = False) -> bytes:
    try:
        return gojson.marshal(value, prepared=prepared)
    except ValueError as exc:
        raise StorageRefError(f"failed to encode value: {exc}") from None


def _stored(content_type: str, encoded: bytes) -> bytes:
    # Go marshals StoredObject{ContentType, Data json.RawMessage}: declaration order.
    return b'{"contentType":"' + content_type.encode() + b'","data":' + encoded + b"}"


def _string_payload(text: str) -> _Payload:
    if len(text) < _STREAM_THRESHOLD:
        return _Payload(_RAW, _stored(_RAW, gojson.marshal(text)))
    return _Payload(_RAW, None, (b'{"contentType":"raw","data":', text))


def _meta_for(payload: _Payload, content_type: str) -> WriteMeta:
    if payload.data is not None:
        raw = payload.data
        return WriteMeta(
            content_type,
            len(raw),
            base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode(),
            base64.b64encode(hashlib.sha256(raw).digest()).decode(),
        )
    return _meta_for_chunks(payload.chunks(), content_type)


def _meta_for_chunks(chunks: Any, content_type: str) -> WriteMeta:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    for chunk in chunks:
        md5.update(chunk)
        sha.update(chunk)
        size += len(chunk)
    return WriteMeta(
        content_type,
        size,
        base64.b64encode(md5.digest()).decode(),
        base64.b64encode(sha.digest()).decode(),
    )


async def _aiter(payload: _Payload) -> AsyncIterator[bytes]:
    for chunk in payload.chunks():
        yield chunk
        # Encoding a large string is CPU work: let other tasks run between pieces.
        await asyncio.sleep(0)


def _validate_blob_path(path: str) -> None:
    try:
        refs.validate_storage_path(path)
    except StorageRefError as exc:
        raise StorageRefError(f"invalid storage path: {exc}", ref=path) from None


def _with_prefix(exc: StorageError, prefix: str) -> StorageError:
    new = type(exc)(f"{prefix}: {exc}", ref=exc.ref)
    return new


# --- streaming decode of large raw objects --------------------------------------------------------

_RAW_PREFIX: Final = b'{"contentType":"raw","data":"'
_RAW_SUFFIX: Final = b'"}'
_ESCAPE: Final = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)


async def _decode_raw_stream(first: bytes, rest: AsyncIterator[bytes]) -> str:
    """Decode a large Go-written ``raw`` object while it is being read.

    Each chunk is decoded and dropped as it arrives and the string grows in place (CPython
    extends a uniquely referenced string with ``realloc``), so the cost stays close to the
    decoded size instead of object + string.

    Raises:
        msgspec.DecodeError: the body is not one JSON string followed by ``}``.
    """
    result = ""
    carry = first[len(_RAW_PREFIX) :]
    async for chunk in rest:
        piece = carry + chunk
        del chunk
        cut = _safe_cut(piece)  # keeps at least 16 bytes back: the closing '"}' never leaks
        carry = piece[cut:]
        result += msgspec.json.decode(b'"' + piece[:cut] + b'"', type=str)
        del piece
    tail = carry.rstrip(b" \t\r\n")
    if not tail.endswith(_RAW_SUFFIX):
        raise msgspec.DecodeError("raw stored object does not end with '\"}'")
    result += msgspec.json.decode(b'"' + tail[: -len(_RAW_SUFFIX)] + b'"', type=str)
    return result


def _safe_cut(piece: bytes) -> int:
    """A cut point splitting neither an escape, a surrogate pair nor a UTF-8 character.

    ``piece`` starts on a token boundary, so scanning escapes from its start is exact; the
    scan is skipped when no backslash is near the cut.
    """
    cut = max(len(piece) - 16, 0)
    if piece.rfind(b"\\", max(cut - 12, 0), cut) != -1:
        prev = last = None
        for m in _ESCAPE.finditer(piece, 0, cut + 6):
            if m.start() >= cut:
                break
            prev, last = last, m
        if last is not None:
            if last.end() > cut:
                cut = last.start()
                if prev is not None and prev.end() == cut and _is_high_surrogate(prev.group()):
                    cut = prev.start()
            elif last.end() == cut and _is_high_surrogate(last.group()):
                cut = last.start()
    while 0 < cut < len(piece) and (piece[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def _is_high_surrogate(escape: bytes) -> bool:
    if len(escape) != 6 or escape[1:2] != b"u":
        return False
    return 0xD800 <= int(escape[2:], 16) <= 0xDBFF


def input_offload(manager: StorageManager, *, schema: str = "", schema_version: str = "") -> Any:
    """The ``StoryTriggers(offload=...)`` seam of ``bubu._triggers`` backed by ``manager``.

    ``await offload(inputs, storage_key)`` is ``manager.dehydrate_inputs`` (prefix ``inputs``,
    whole-input ``input.json`` fallback); with storage disabled, inputs above
    ``BUBU_MAX_INLINE_SIZE`` raise ``StorageDisabledError`` as Go's ``TriggerStory`` does.
    ``schema``/``schema_version`` (``bubu://story/<ns>/<story>/inputs`` and the Story's
    ``spec.version`` in Go) are written into the refs.
    """

    async def offload(inputs: dict[str, Any], storage_key: str) -> Any:
        return await manager.dehydrate_inputs(
            inputs, storage_key, schema=schema, schema_version=schema_version
        )

    return offload
