"""The ``s3`` provider, on obstore (the ``bubu[s3]`` extra; docs/decisions/0004-s3-client.md).

Settings come from ``S3Config`` (``BUBU_STORAGE_S3_*``, ``BUBU_S3_*``): bucket, region,
endpoint (``http://`` allowed only for an explicit http endpoint), path-style or virtual-host
addressing, the standard retry policy (``BUBU_S3_MAX_RETRIES`` attempts, capped backoff), the
per-request timeout, SSE (``AES256`` or ``aws:kms`` with a key), part size and concurrency.

Credentials, in order: ``BUBU_S3_ACCESS_KEY_ID``/``SECRET``/``SESSION_TOKEN``; anonymous when a
custom endpoint has nothing else configured; a profile of the shared credentials file; then
obstore's default chain (``AWS_*`` variables, web identity, container credentials, instance
metadata).

Writes up to one part go as one PUT with ``x-amz-checksum-sha256`` (obstore computes it; the
server rejects a corrupted body). Larger ones stream as a multipart upload of
``BUBU_S3_MAX_PART_SIZE`` parts; if the upload fails or the caller is cancelled (timeout), the
source is failed so obstore aborts the multipart upload (30 s bound, as Go), and no part is
left behind. Reads stream in 1 MiB chunks.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Final

import obstore
from obstore import exceptions as obe
from obstore.store import S3Store as _ObStore

from bubu._runtime.env import S3Config
from bubu._storage.store import READ_CHUNK, Chunks, WriteMeta, iter_chunks
from bubu.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnavailableError,
)

__all__ = ["ABORT_TIMEOUT", "S3Store"]

#: how long an aborting multipart upload may take (Go's best-effort abort bound)
ABORT_TIMEOUT: Final = 30.0
_MAX_MESSAGE = 300
#: obstore texts of a store that cannot be reached or failed (worth retrying the step)
_TRANSIENT: Final = (
    "error sending request",
    "onnection",
    "timed out",
    "status code: 5",
    "dns error",
)


class _SourceAbortedError(Exception):
    """Raised into obstore's source so it aborts the multipart upload."""


def _shared_credentials(config: S3Config) -> dict[str, str]:
    path = config.shared_credentials_file or os.path.expanduser("~/.aws/credentials")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if not parser.read(path):
            return {}
    except configparser.Error:
        return {}
    section = config.profile or "default"
    if not parser.has_section(section):
        return {}
    key = parser.get(section, "aws_access_key_id", fallback="").strip()
    secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
    if not key or not secret:
        return {}
    creds = {"access_key_id": key, "secret_access_key": secret}
    token = parser.get(section, "aws_session_token", fallback="").strip()
    if token:
        creds["token"] = token
    return creds


def _ob_config(config: S3Config) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "virtual_hosted_style_request": not config.force_path_style,
        # obstore computes the SHA-256 of each request body and S3 verifies it.
        "checksum_algorithm": "sha256",
    }
    if config.region:
        kw["region"] = config.region
    if config.endpoint:
        kw["endpoint"] = config.endpoint
    if config.sse is not None:
        kw["server_side_encryption"] = config.sse
        if config.sse_kms_key:
            kw["sse_kms_key_id"] = config.sse_kms_key
    if config.access_key_id and config.secret_access_key is not None:
        kw["access_key_id"] = config.access_key_id
        kw["secret_access_key"] = config.secret_access_key.reveal()
        if config.session_token is not None:
            kw["token"] = config.session_token.reveal()
    elif config.anonymous:
        kw["skip_signature"] = True
    elif not config.endpoint or config.shared_credentials_file or config.profile:
        shared = _shared_credentials(config)
        if shared:
            kw["access_key_id"] = shared["access_key_id"]
            kw["secret_access_key"] = shared["secret_access_key"]
            if "token" in shared:
                kw["token"] = shared["token"]
    return kw


def _map_error(exc: BaseException, key: str, action: str) -> StorageError:
    # obstore messages carry the URL and the server's XML, never the signing key; keep the
    # first line, bounded.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text[:_MAX_MESSAGE]
    if isinstance(exc, obe.NotFoundError | FileNotFoundError):
        return StorageNotFoundError(f"{action} '{key}': object not found", ref=key)
    if isinstance(exc, obe.PermissionDeniedError | obe.UnauthenticatedError):
        return StorageAccessError(
            f"{action} '{key}': the store refused the credentials ({text})", ref=key
        )
    if isinstance(exc, obe.GenericError) and any(marker in str(exc) for marker in _TRANSIENT):
        return StorageUnavailableError(f"{action} '{key}': {text}", ref=key)
    return StorageError(f"{action} '{key}': {text}", ref=key)


class S3Store:
    """Objects in one S3 bucket (Go ``S3Store``).

    Args:
        config: the validated S3 settings.

    Raises:
        StorageError: obstore refuses the configuration.
    """

    def __init__(self, config: S3Config) -> None:
        self._config = config
        self._part_size = max(config.max_part_size, 5 * 1024 * 1024)
        retry = {
            "max_retries": max(config.max_retries - 1, 0),
            "retry_timeout": timedelta(seconds=max(config.timeout, 1.0)),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=max(config.max_backoff, 0.001)),
                "base": 2,
            },
        }
        client = {
            "timeout": timedelta(seconds=config.timeout),
            "connect_timeout": timedelta(seconds=min(config.timeout, 30.0)),
            "allow_http": config.endpoint.startswith("http://"),
        }
        try:
            self._store = _ObStore(
                config.bucket,
                client_options=client,  # type: ignore[arg-type]
                retry_config=retry,  # type: ignore[arg-type]
                **_ob_config(config),
            )
        except (obe.BaseError, ValueError, TypeError) as exc:
            raise StorageError(f"failed to initialize S3 storage: {exc}") from None

    @property
    def provider(self) -> str:
        """``s3``."""
        return "s3"

    def __repr__(self) -> str:
        return f"S3Store(bucket={self._config.bucket!r}, endpoint={self._config.endpoint!r})"

    async def write(self, key: str, data: Chunks, meta: WriteMeta) -> None:
        """One PUT up to a part; a streamed multipart upload above, aborted on any failure."""
        attributes = {"Content-Type": meta.content_type}
        if isinstance(data, bytes) and len(data) <= self._part_size:
            try:
                await obstore.put_async(
                    self._store, key, data, attributes=attributes, use_multipart=False
                )
            except obe.BaseError as exc:
                raise _map_error(exc, key, "failed to upload object") from None
            except OSError as exc:
                raise StorageUnavailableError(
                    f"failed to upload object '{key}': {exc}", ref=key
                ) from None
            return
        aborted = asyncio.Event()
        failure: list[BaseException] = []

        async def source() -> AsyncIterator[bytes]:
            chunks = _sized(data, self._part_size).__aiter__()
            abort_wait = asyncio.ensure_future(aborted.wait())
            try:
                while True:
                    # Race the producer against cancellation: a stalled producer must not keep
                    # the multipart upload from being aborted.
                    step = asyncio.ensure_future(anext(chunks))
                    done, _ = await asyncio.wait(
                        {step, abort_wait}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if step not in done:
                        step.cancel()
                        raise _SourceAbortedError("upload cancelled")
                    try:
                        chunk = step.result()
                    except StopAsyncIteration:
                        return
                    except BaseException as exc:
                        failure.append(exc)
                        raise
                    yield chunk
            finally:
                abort_wait.cancel()

        future = asyncio.ensure_future(
            obstore.put_async(
                self._store,
                key,
                source(),
                attributes=attributes,
                use_multipart=True,
                chunk_size=self._part_size,
                max_concurrency=max(self._config.concurrency, 1),
            )
        )
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # Fail the source so obstore aborts the multipart upload, then stop waiting.
            aborted.set()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(ABORT_TIMEOUT):
                    await future
            future.cancel()
            raise
        except obe.BaseError as exc:
            if failure:
                raise failure[0] from None
            raise _map_error(exc, key, "failed to upload object") from None
        except OSError as exc:
            if failure:
                raise failure[0] from None
            raise StorageUnavailableError(
                f"failed to upload object '{key}': {exc}", ref=key
            ) from None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """GET the object and yield it in 1 MiB chunks."""
        try:
            result = await obstore.get_async(self._store, key)
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)
        except obe.BaseError as exc:
            raise _map_error(exc, key, "failed to get object") from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise StorageNotFoundError(
                    f"failed to get object '{key}': object not found", ref=key
                ) from None
            raise StorageUnavailableError(f"failed to get object '{key}': {exc}", ref=key) from None

    async def size(self, key: str) -> int:
        """HEAD the object."""
        try:
            meta = await obstore.head_async(self._store, key)
        except (obe.BaseError, FileNotFoundError) as exc:
            raise _map_error(exc, key, "failed to stat object") from None
        return int(meta["size"])

    async def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``."""
        out: list[str] = []
        try:
            async for batch in obstore.list(self._store, prefix.rstrip("/") + "/"):
                out.extend(item["path"] for item in batch)
        except obe.BaseError as exc:
            raise _map_error(exc, prefix, "failed to list prefix") from None
        return sorted(out)

    async def delete(self, key: str) -> None:
        """DELETE the object (idempotent)."""
        try:
            await obstore.delete_async(self._store, key)
        except (obe.BaseError, FileNotFoundError) as exc:
            if isinstance(exc, obe.NotFoundError | FileNotFoundError):
                return
            raise _map_error(exc, key, "failed to delete object") from None

    async def aclose(self) -> None:
        """obstore pools connections per store; nothing to close explicitly."""


async def _sized(data: Chunks, part: int) -> AsyncIterator[bytes]:
    """Re-chunk ``data`` so a large in-memory payload is handed over part by part."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for i in range(0, len(view), part):
            yield bytes(view[i : i + part])
        return
    async for chunk in iter_chunks(data):
        yield chunk
