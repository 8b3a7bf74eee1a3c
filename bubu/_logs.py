"""Log publishing: step logs go to storage, ``StepRun.status.logs`` points at them.

See docs/contract/signals.md#log-publishing.

``LogPublisher.publish(payload)`` writes the bytes as a blob at
``<ns>/logs/<storyRun>/<step>/<stepRun>/<unixNano>.log`` (segments cleaned to
``[a-zA-Z0-9._-]``, empty ones left out), with MD5/SHA-256 metadata, then merges
``{"$bubuStorageRef", "$bubuStorageContentType", "$bubuStorageSchema"?,
"$bubuStorageSchemaVersion"?}`` into ``status.logs`` (5 s bound, as Go). Before anything is
written, known secret values and credential patterns (``password=...``, ``Authorization:
Bearer ...``) are replaced by ``[REDACTED]``.

``publish_file`` reads a log file only when it resolves (absolute, symlinks followed) inside
an allowed root (``BUBU_LOG_ALLOWED_ROOTS``, default ``/tmp``, ``/var/tmp``, ``/var/log``, the
temp dir and the working directory), is a regular file and is at most
``BUBU_LOG_FILE_MAX_BYTES`` (5 MiB) long.

``LogCapture`` keeps the last 1 MiB of what the step writes (SDK log records, and
``sys.stdout``/``sys.stderr`` when asked) for ``publish_captured`` at the end of the run; the
entry points start it when storage is enabled and ``BUBU_STEPRUN_NAME`` is set, which is when
Go's capture publishes.

``publish_logs`` / ``publish_log_file`` are the helpers user code calls inside a run: they find
the run's environment, status sink and secret values in the ``RunScope`` (``scope.mask``, which
the start-up fills, ``bubu._startup``) and raise
``LogsUnavailableError`` outside a StepRun or with storage disabled.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Final

from bubu import _scope
from bubu._logging import JsonFormatter
from bubu._runtime import parse, refs
from bubu._runtime.redact import SecretMask, redact_message
from bubu._storage import shared
from bubu._storage.manager import StorageManager, namespaced_key, step_schema
from bubu.errors import KubernetesError, LogFileError, LogsUnavailableError, StorageError

if TYPE_CHECKING:
    from bubu._k8s.status import StatusSink
    from bubu._runtime.env import RuntimeEnv

__all__ = [
    "CAPTURE_BYTES",
    "DEFAULT_LOG_CONTENT_TYPE",
    "LOG_PATCH_TIMEOUT",
    "LogCapture",
    "LogPublisher",
    "RunCapture",
    "allowed_log_roots",
    "log_schema",
    "log_storage_path",
    "publish_log_file",
    "publish_logs",
    "redact_log_payload",
    "resolve_log_file",
]

_log = logging.getLogger("bubu.logs")

DEFAULT_LOG_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
CAPTURED_CONTENT_TYPE: Final = "application/x-ndjson"
#: bound on the status write (Go ``logPatchTimeout``)
LOG_PATCH_TIMEOUT: Final = 5.0
#: the capture keeps the last 1 MiB (Go ``defaultLogCaptureSize``)
CAPTURE_BYTES: Final = 1024 * 1024
DEFAULT_LOG_FILE_MAX_BYTES: Final = 5 * 1024 * 1024
_SEGMENT: Final = re.compile(r"[^a-zA-Z0-9._-]+")


def _segment(raw: str) -> str:
    trimmed = parse.go_trim_space(raw)
    return _SEGMENT.sub("-", trimmed).strip("-_.") if trimmed else ""


def log_storage_path(
    namespace: str, story_run: str, step: str, step_run: str, unix_nano: int
) -> str:
    """``<ns>/logs/<storyRun>/<step>/<stepRun>/<unixNano>.log`` (Go ``buildLogStoragePath``);
    ``""`` without a StepRun name or a namespace."""
    if not parse.go_trim_space(step_run):
        return ""
    segments = ["logs"] + [s for s in map(_segment, (story_run, step, step_run)) if s]
    segments.append(f"{unix_nano}.log")
    return namespaced_key(namespace, "/".join(segments))


def log_schema(
    namespace: str,
    *,
    engram: str,
    story: str,
    step: str,
    engram_version: str = "",
    story_version: str = "",
) -> tuple[str, str]:
    """``(schema, version)`` of the logs ref (Go ``logSchemaMetadata``); ``("", "")`` when the
    identity is too thin to name one."""
    schema = step_schema("logs", namespace, engram=engram, story=story, step=step)
    if not schema:
        return "", ""
    version = parse.go_trim_space(engram_version) or parse.go_trim_space(story_version)
    return schema, version


def redact_log_payload(payload: bytes, secret_values: Iterable[str]) -> bytes:
    """Mask known secret values (every printed form, ``SecretMask``) and credential patterns.

    Non-UTF-8 bytes survive unchanged (``surrogateescape``).
    """
    # Patterns first: masking values first would leave "[REDACTED" for the patterns to eat.
    text = redact_message(payload.decode("utf-8", "surrogateescape"))
    mask = SecretMask(secret_values)
    if mask:
        text = mask(text)
    return text.encode("utf-8", "surrogateescape")


# --- files ---------------------------------------------------------------------------------------


def allowed_log_roots(configured: Iterable[str] | None = None) -> list[str]:
    """The allowed roots, absolute, symlinks resolved, deduplicated (Go
    ``resolveAllowedLogRoots``)."""
    candidates = list(configured) if configured else None
    if not candidates:
        candidates = ["/tmp", "/var/tmp", "/var/log", tempfile.gettempdir()]
        with contextlib.suppress(OSError):
            candidates.append(os.getcwd())
    roots: list[str] = []
    for candidate in candidates:
        text = parse.go_trim_space(candidate)
        if not text:
            continue
        root = os.path.realpath(os.path.abspath(text))
        if root not in roots:
            roots.append(root)
    return roots


def _within(path: str, root: str) -> bool:
    rel = os.path.relpath(path, root)
    return rel == "." or (rel != ".." and not rel.startswith(".." + os.sep))


def resolve_log_file(
    path: str, *, allowed_roots: Iterable[str] | None = None, max_bytes: int = 0
) -> str:
    """Check a log file the way Go's ``readAllowedLogFile`` does and return its real path.

    Raises:
        LogFileError: ``log file path is required``, ``log file path "<p>" is outside allowed
            roots``, ``log file path must reference a regular file`` or ``log file exceeds max
            bytes (<n> > <max>)``.
    """
    clean = parse.go_trim_space(path)
    if not clean:
        raise LogFileError("log file path is required")
    absolute = os.path.abspath(clean)
    if not os.path.lexists(absolute):
        raise LogFileError(f"failed to resolve log file path: {parse.go_quote(clean)} not found")
    resolved = os.path.realpath(absolute)
    if not any(_within(resolved, root) for root in allowed_log_roots(allowed_roots)):
        raise LogFileError(f"log file path {parse.go_quote(clean)} is outside allowed roots")
    try:
        st = os.stat(resolved)
    except OSError as exc:
        raise LogFileError(f"failed to stat log file: {os.strerror(exc.errno or 0)}") from None
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        raise LogFileError("log file path must reference a regular file")
    if max_bytes > 0 and st.st_size > max_bytes:
        raise LogFileError(f"log file exceeds max bytes ({st.st_size} > {max_bytes})")
    return resolved


# --- publisher -----------------------------------------------------------------------------------


@dataclass
class LogPublisher:
    """Publishes a StepRun's logs (one per run).

    Attributes:
        manager: the run's storage manager; disabled storage gives ``LogsUnavailableError``.
        sink: where ``status.logs`` is written.
        step_run: ``BUBU_STEPRUN_NAME`` (required).
        namespace: the pod namespace (first of ``BUBU_TARGET_STORY_NAMESPACE``...
            ``BUBU_POD_NAMESPACE``, as Go's ``ResolvePodNamespace``).
        story_run, step, story, engram, engram_version, story_version: identity for the path
            and the schema.
        secret_values: values masked before writing.
        allowed_roots: ``BUBU_LOG_ALLOWED_ROOTS`` (``None``: the defaults).
        file_max_bytes: ``BUBU_LOG_FILE_MAX_BYTES``.
    """

    manager: StorageManager
    sink: StatusSink | None
    step_run: str
    namespace: str
    story_run: str = ""
    step: str = ""
    story: str = ""
    engram: str = ""
    engram_version: str = ""
    story_version: str = ""
    secret_values: tuple[str, ...] = ()
    allowed_roots: tuple[str, ...] | None = None
    file_max_bytes: int = DEFAULT_LOG_FILE_MAX_BYTES
    clock: Any = field(default=time.time_ns, repr=False)

    def __repr__(self) -> str:
        return f"LogPublisher(step_run={self.step_run!r}, namespace={self.namespace!r})"

    @classmethod
    def from_env(
        cls,
        env: RuntimeEnv,
        manager: StorageManager,
        sink: StatusSink | None,
        secret_values: Iterable[str] = (),
    ) -> LogPublisher:
        """Build the publisher for a run from its environment."""
        return cls(
            manager=manager,
            sink=sink,
            step_run=parse.go_trim_space(env.steprun_name),
            namespace=env.namespace,
            story_run=parse.go_trim_space(env.storyrun_id),
            step=parse.go_trim_space(env.step_name),
            story=parse.go_trim_space(env.story_name),
            engram=env.engram_name,
            engram_version=env.engram_version,
            story_version=env.story_version,
            secret_values=tuple(secret_values),
            allowed_roots=env.log_allowed_roots,
            file_max_bytes=env.log_file_max_bytes,
        )

    async def publish(self, payload: bytes | str, content_type: str = "") -> dict[str, str] | None:
        """Write ``payload`` to storage and point ``status.logs`` at it.

        Returns:
            The ref written into the status, or ``None`` for an empty payload (a no-op).

        Raises:
            LogsUnavailableError: no StepRun name, or storage disabled.
            StorageError and subclasses: the write failed.
            KubernetesError: the status write failed.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if not data:
            return None
        if not self.step_run or not self.manager.enabled:
            raise LogsUnavailableError()
        path = log_storage_path(
            self.namespace, self.story_run, self.step, self.step_run, self.clock()
        )
        if not path:
            raise StorageError("failed to build log storage path")
        ctype = parse.go_trim_space(content_type) or DEFAULT_LOG_CONTENT_TYPE
        await self.manager.write_blob(path, redact_log_payload(data, self.secret_values), ctype)
        ref = {refs.STORAGE_REF_KEY: path, refs.STORAGE_CONTENT_TYPE_KEY: ctype}
        schema, version = log_schema(
            self.namespace,
            engram=self.engram,
            story=self.story,
            step=self.step,
            engram_version=self.engram_version,
            story_version=self.story_version,
        )
        if schema:
            ref[refs.STORAGE_SCHEMA_KEY] = schema
            if version:
                ref[refs.STORAGE_SCHEMA_VERSION_KEY] = version
        if self.sink is not None:
            await self.sink.write({"logs": ref}, operation_timeout=LOG_PATCH_TIMEOUT)
        return ref

    async def publish_file(self, path: str, content_type: str = "") -> dict[str, str] | None:
        """Publish a log file after the allowed-roots, regular-file and size checks.

        Raises:
            LogFileError: the file is refused (the message says why).
            As ``publish``.
        """
        resolved = resolve_log_file(
            path, allowed_roots=self.allowed_roots, max_bytes=self.file_max_bytes
        )
        import asyncio

        data = await asyncio.to_thread(_read_file, resolved)
        return await self.publish(data, content_type)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LogFileError(f"failed to read log file: {os.strerror(exc.errno or 0)}") from None


# --- capture -------------------------------------------------------------------------------------


class LogCapture:
    """The last ``limit`` bytes the step wrote, kept for publishing at the end of the run.

    ``handler()`` is a logging handler writing JSON lines into the buffer; ``tee_stdio()``
    copies ``sys.stdout`` and ``sys.stderr`` writes into it as well (still printing them).
    Thread-safe: handlers may run in worker threads.
    """

    def __init__(self, limit: int = CAPTURE_BYTES) -> None:
        self._limit = limit if limit > 0 else CAPTURE_BYTES
        self._data = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        """Append ``data``, dropping the oldest bytes past the limit (Go ``cappedBuffer``)."""
        if not data:
            return 0
        with self._lock:
            if len(data) >= self._limit:
                self._data[:] = data[len(data) - self._limit :]
            else:
                overflow = len(self._data) + len(data) - self._limit
                if overflow > 0:
                    del self._data[:overflow]
                self._data += data
        return len(data)

    def size(self) -> int:
        """How many bytes are held."""
        with self._lock:
            return len(self._data)

    def drain(self) -> bytes:
        """Return and clear what was captured."""
        with self._lock:
            out = bytes(self._data)
            self._data.clear()
        return out

    def handler(self, secret_values: Iterable[str] = ()) -> logging.Handler:
        """A handler that writes records into the capture as JSON lines."""
        capture = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    capture.write((self.format(record) + "\n").encode("utf-8", "replace"))
                except Exception:  # a log handler must never raise into user code
                    self.handleError(record)

        h = _Handler()
        h.setFormatter(JsonFormatter(SecretMask(secret_values)))
        return h

    @contextlib.contextmanager
    def tee_stdio(self) -> Iterator[None]:
        """Copy ``sys.stdout``/``sys.stderr`` writes into the capture for the ``with`` body."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(saved[0], self)
        sys.stderr = _Tee(saved[1], self)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved

    async def publish_captured(self, publisher: LogPublisher | None) -> dict[str, str] | None:
        """Publish what was captured as ``application/x-ndjson``; unavailable logs and
        storage failures are logged, not raised (Go ``publishCapturedLogs``)."""
        payload = self.drain()
        if not payload or publisher is None:
            return None
        try:
            return await publisher.publish(payload, CAPTURED_CONTENT_TYPE)
        except LogsUnavailableError:
            return None
        except Exception as exc:
            _log.warning("Failed to publish captured logs", extra={"error": str(exc)})
            return None


class _Tee(io.TextIOBase):
    def __init__(self, target: IO[str], capture: LogCapture) -> None:
        self._target = target
        self._capture = capture

    def write(self, s: str) -> int:
        self._capture.write(s.encode("utf-8", "replace"))
        return self._target.write(s)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")


class RunCapture:
    """A run's log capture, started by the lifecycle (Go ``withDefaultLogger`` +
    ``publishCapturedLogs``): log records (masked, with the run's context fields) and the
    standard streams go into a ``LogCapture`` until ``publish``.

    Build with ``start``; ``close`` stops capturing (idempotent); ``publish`` closes, then
    writes what was captured as ``application/x-ndjson`` and points ``status.logs`` at it.
    Publishing failures are logged, never raised.
    """

    def __init__(self, env: RuntimeEnv, capture: LogCapture, mask: SecretMask) -> None:
        self.env = env
        self.capture = capture
        self.mask = mask
        self._stack = contextlib.ExitStack()

    @classmethod
    def start(
        cls, env: RuntimeEnv, mask: SecretMask, fields: logging.Filter | None = None
    ) -> RunCapture:
        """Start capturing: a handler on the root logger and a tee on stdout/stderr."""
        run = cls(env, LogCapture(), mask)
        handler = run.capture.handler()
        handler.setFormatter(JsonFormatter(mask))
        if fields is not None:
            handler.addFilter(fields)
        root = logging.getLogger()
        root.addHandler(handler)
        run._stack.callback(root.removeHandler, handler)
        run._stack.enter_context(run.capture.tee_stdio())
        return run

    def close(self) -> None:
        """Stop capturing."""
        self._stack.close()

    async def publish(self, kube: Any, sink: StatusSink | None) -> dict[str, str] | None:
        """Stop capturing and publish what was captured (``status.logs``)."""
        self.close()
        try:
            manager = shared.manager_for(self.env, kube=kube)
        except StorageError as exc:
            _log.warning("Failed to publish captured logs", extra={"error": str(exc)})
            return None
        publisher = LogPublisher.from_env(self.env, manager, sink, tuple(self.mask.values))
        return await self.capture.publish_captured(publisher)

    async def publish_to_step_run(self) -> dict[str, str] | None:
        """``publish`` through a client of its own and the StepRun's status (lifecycles that
        keep no client: streaming, impulse). Failures are logged, never raised."""
        self.close()
        if not self.capture.size():
            return None
        from bubu._k8s.client import KubeClient
        from bubu._k8s.status import KubeStatusSink

        env = self.env
        try:
            kube = await KubeClient.from_env(env)
        except KubernetesError as exc:
            _log.warning("Failed to publish captured logs", extra={"error": str(exc)})
            return None
        async with kube:
            sink = KubeStatusSink(
                kube,
                env.steprun_name,
                None,
                max_retries=env.k8s_patch_max_retries,
                operation_timeout=env.k8s_operation_timeout,
            )
            return await self.publish(kube, sink)


# --- helpers for user code -----------------------------------------------------------------------


def _publisher_from_scope() -> LogPublisher:
    scope = _scope.current()
    env = scope.env if scope is not None else None
    if scope is None or env is None or not parse.go_trim_space(env.steprun_name):
        raise LogsUnavailableError()
    if env.storage is None:
        raise LogsUnavailableError()
    manager = shared.manager_for(env, kube=scope.kube)
    values = tuple(scope.mask.values)
    return LogPublisher.from_env(env, manager, scope.status, values)


async def publish_logs(payload: bytes | str, content_type: str = "") -> dict[str, str] | None:
    """Publish ``payload`` as this step's logs (Go ``PublishLogs``/``PublishLogsWithContentType``).

    Returns:
        The ref written into ``StepRun.status.logs``; ``None`` for an empty payload.

    Raises:
        LogsUnavailableError: outside a StepRun, or storage disabled.
        StorageError: the write failed (a ``KubernetesError`` when the status write did).
    """
    if not payload:
        return None
    return await _publisher_from_scope().publish(payload, content_type)


async def publish_log_file(path: str, content_type: str = "") -> dict[str, str] | None:
    """Publish a log file as this step's logs (Go ``PublishLogFile``).

    The file must resolve (symlinks followed) inside an allowed root
    (``BUBU_LOG_ALLOWED_ROOTS``; by default ``/tmp``, ``/var/tmp``, ``/var/log``, the temp dir
    and the working directory), be a regular file and be at most ``BUBU_LOG_FILE_MAX_BYTES``.

    Returns:
        The ref written into ``StepRun.status.logs``; ``None`` for an empty file.

    Raises:
        LogFileError: outside the allowed roots, not a regular file, or too large.
        LogsUnavailableError: outside a StepRun, or storage disabled.
        StorageError: the write failed (a ``KubernetesError`` when the status write did).
    """
    publisher = _publisher_from_scope()
    return await publisher.publish_file(path, content_type)
