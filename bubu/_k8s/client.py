"""KubeClient: the SDK's one Kubernetes client (the only module that imports kr8s).

kr8s supplies configuration loading (kubeconfig, exec plugins, service account) and
credentials; requests go over ``bubu._k8s.transport``: HTTP/2, one TLS connection per client
for the life of the process, watches included (docs/k8s-transport.md says why httpx's HTTP/2
could not be used). When HTTP/2 is not possible (an ``http://`` URL, a proxy in the kubeconfig,
a server that does not offer ``h2``) the client falls back to kr8s's httpx session over
HTTP/1.1. Every request is a verb and path we choose, because kr8s's object helpers do not fit
the engram-runner Role (docs/deploying.md#engram-runner-role, docs/contract/index.md#apiserver):

* ``get`` is a direct GET; kr8s's ``get(name)`` is a LIST the Role does not allow.
* ``replace`` is a real HTTP PUT (EffectClaim writes need ``update``,
  docs/contract/effect-claim.md#put-not-patch).
* ``watch`` watches one object with ``fieldSelector=metadata.name=<n>`` (the ``watch`` verb only).
* 403 is not retried: kr8s re-authenticates three times on 401/403, which turns a webhook denial
  into four round trips (docs/contract/errors.md#webhook-denials). We re-authenticate once, on 401
  only.

Configuration order is in-cluster, then ``$KUBECONFIG``, then ``~/.kube/config``
(docs/contract/errors.md#kubernetes-errors). Errors are translated in ``bubu._k8s.errors``; nothing
above this package sees kr8s, httpx or h2 exceptions.

kr8s, httpx and h2 are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.parse
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import msgspec

from bubu._k8s import errors as k8s_errors
from bubu._k8s.resources import Kind
from bubu._runtime import env
from bubu._runtime.sources import EnvSource
from bubu.errors import KubernetesError

if TYPE_CHECKING:
    import kr8s.asyncio

    from bubu._k8s.transport import H2Transport
    from bubu._k8s.watch import LiveObjects
    from bubu._runtime.env import RuntimeEnv

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_USER_AGENT",
    "SERVICE_ACCOUNT_DIR",
    "KubeClient",
    "RateLimit",
]

DEFAULT_USER_AGENT: Final = "bubu-sdk-python"
# BUBU_K8S_TIMEOUT default (docs/contract/runtime-environment.md#kubernetes-client)
DEFAULT_TIMEOUT: Final = 30.0
SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"

_MERGE_PATCH: Final = "application/merge-patch+json"
_JSON: Final = "application/json"
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()


def _in_cluster(sa_dir: str) -> bool:
    # client-go's InClusterConfig needs both the service env vars and the token file.
    return bool(
        os.environ.get("KUBERNETES_SERVICE_HOST")
        and os.environ.get("KUBERNETES_SERVICE_PORT")
        and os.path.isfile(os.path.join(sa_dir, "token"))
    )


def _read_namespace(sa_dir: str) -> str | None:
    try:
        with open(os.path.join(sa_dir, "namespace"), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


class RateLimit:
    """A client-side token bucket on every request, as client-go's ``QPS``/``Burst``.

    Off by default: the API server's own limits (HTTP/2 ``SETTINGS_MAX_CONCURRENT_STREAMS``,
    priority and fairness, 429 with ``Retry-After``) bound the client. The Go SDK's client
    allows 20 requests/s with bursts of 40; ``RateLimit(20, 40)`` matches it.

    Args:
        qps: requests per second; must be > 0.
        burst: the bucket size; 0 means ``max(1, int(qps))``.
    """

    def __init__(self, qps: float, burst: int = 0) -> None:
        if qps <= 0:
            raise ValueError(f"qps must be > 0, got {qps}")
        self.qps = float(qps)
        self.burst = burst if burst > 0 else max(1, int(qps))
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()

    def reserve(self) -> float:
        """Take one token; return how long to wait before using it (0: now)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def wait(self) -> None:
        """Wait for a token (a cancelled wait gives its token back, as Go's limiter does)."""
        delay = self.reserve()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self._tokens += 1
                raise

    def __repr__(self) -> str:
        return f"RateLimit(qps={self.qps:g}, burst={self.burst})"


class KubeClient:
    """An async Kubernetes REST client speaking raw verbs on typed ``Kind`` paths.

    Build one with ``await KubeClient.connect(...)`` and use it as an async context manager
    (or call ``aclose()``). Methods take a ``Kind`` from ``bubu._k8s.resources``; a
    ``namespace`` of None means the client namespace. Every method raises a
    ``bubu.errors.KubernetesError`` (``NotFoundError``, ``ConflictError``,
    ``ForbiddenError``, ``WatchExpiredError``...) with ``status_code``, ``reason``,
    ``retryable`` and ``retry_after`` set.

    Requests in flight are bounded by the API server's HTTP/2 stream limit (100 on
    kube-apiserver): more wait for a free stream. ``rate_limit`` adds a client-side
    requests-per-second limit (none by default).

    Example::

        async with await KubeClient.connect(namespace="default") as kube:
            step = await kube.get(STEP_RUN, "my-step")
    """

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        namespace: str,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: float = DEFAULT_TIMEOUT,
        transport: H2Transport | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        """Wrap an authenticated kr8s ``Api``; prefer ``connect()``.

        Without ``transport`` requests go through kr8s's httpx session (HTTP/1.1).
        """
        self._api = api
        self._namespace = namespace
        self._user_agent = user_agent
        self._timeout = timeout
        self._h2 = transport
        self._rate_limit = rate_limit
        self._closed = False
        self._live: LiveObjects | None = None
        self._token: str | None = None
        self._h2_headers: list[tuple[bytes, bytes]] = []
        self._refresh_h2_headers()

    @classmethod
    async def from_env(cls, run_env: RuntimeEnv) -> KubeClient:
        """``connect`` with what a run's environment says: namespace, User-Agent, timeout,
        kubeconfig fallback and the ``BUBU_K8S_QPS``/``BUBU_K8S_BURST`` rate limit.

        Every client a run opens for itself (status, logs, payloads, impulses) is built here,
        so they all honour the same settings.
        """
        return await cls.connect(
            namespace=run_env.namespace or None,
            user_agent=run_env.k8s_user_agent,
            timeout=run_env.k8s_timeout,
            kubeconfig_fallback=run_env.kubeconfig,
            qps=run_env.k8s_qps,
            burst=run_env.k8s_burst,
        )

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        namespace: str | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - per-request HTTP timeout
        url: str | None = None,
        service_account_dir: str = SERVICE_ACCOUNT_DIR,
        kubeconfig_fallback: str | None = None,
        rate_limit: RateLimit | None = None,
        http2: bool = True,
        env_source: EnvSource | None = None,
        qps: float | None = None,
        burst: int = 0,
    ) -> KubeClient:
        """Load configuration, authenticate and check that the server answers.

        Args:
            kubeconfig: an explicit kubeconfig path; wins over everything else.
            namespace: the client namespace; else the kubeconfig context's or the service
                account's namespace, else ``default``.
            user_agent: the User-Agent header (the server's default field manager).
            timeout: per-request HTTP timeout in seconds (``BUBU_K8S_TIMEOUT``).
            url: an explicit API server URL (tests).
            service_account_dir: where the in-cluster token lives (tests).
            kubeconfig_fallback: the kubeconfig to use when not in a cluster, instead of
                ``$KUBECONFIG`` / ``~/.kube/config`` (a ``KUBECONFIG`` read through an
                ``EnvSource``).
            rate_limit: a client-side request rate limit; None: ``BUBU_K8S_QPS`` and
                ``BUBU_K8S_BURST`` from ``env_source`` decide (no limit when unset).
            http2: False forces kr8s's HTTP/1.1 session (tests of the fallback).
            env_source: where ``BUBU_K8S_QPS``/``BUBU_K8S_BURST`` are read (``os.environ``
                when None).
            qps: the already-loaded ``BUBU_K8S_QPS`` (``RuntimeEnv.k8s_qps``; 0: no limit);
                when given, the environment is not read again.
            burst: the already-loaded ``BUBU_K8S_BURST``, used with ``qps``.

        Raises:
            KubernetesError: no usable configuration, or the server cannot be reached.
        """
        import kr8s.asyncio

        if rate_limit is None:
            if qps is None:
                settings = env.load_client_settings(env_source)
                qps, burst = settings.qps, settings.burst
            if qps > 0:
                rate_limit = RateLimit(qps, burst)
        kwargs: dict[str, Any] = {"namespace": namespace, "url": url}
        if kubeconfig:
            kwargs["kubeconfig"] = kubeconfig
            kwargs["serviceaccount"] = ""
        elif url is None and _in_cluster(service_account_dir):
            # Go order: in-cluster first (docs/contract/runtime-environment.md#kubernetes-client).
            # kr8s tries the kubeconfig first, so point it at a path that cannot exist; its loader
            # then falls through to the service account.
            kwargs["kubeconfig"] = os.path.join(service_account_dir, ".bubu-no-kubeconfig")
            kwargs["serviceaccount"] = service_account_dir
            if namespace is None:
                # kr8s 0.20 never reads the service account's namespace file (its check is
                # "namespace is None", but the property defaults to "default"): read it here.
                namespace = _read_namespace(service_account_dir)
                kwargs["namespace"] = namespace
        else:
            if kubeconfig_fallback:
                kwargs["kubeconfig"] = kubeconfig_fallback
            kwargs["serviceaccount"] = service_account_dir
        operation = "connect to the Kubernetes API"
        # A private instance, not the kr8s per-loop cache: each client owns its session,
        # so one client's aclose() never breaks another
        # (docs/contract/design.md#cancellation-and-shutdown).
        api = kr8s.asyncio.Api(bypass_factory=True, context=None, **kwargs)
        api.timeout = timeout
        transport: H2Transport | None = None
        try:
            try:
                await api.auth
            except ValueError as exc:
                where = kubeconfig or kubeconfig_fallback or os.environ.get("KUBECONFIG")
                raise KubernetesError(
                    f"{operation}: no in-cluster config and no usable kubeconfig at "
                    f"{where or '~/.kube/config'}: {exc}",
                    reason="NoConfig",
                ) from exc
            if http2:
                transport = await _open_http2(api, user_agent, timeout)
            if transport is None:
                with warnings.catch_warnings():
                    # kr8s warns when the server is newer than the versions it was tested
                    # with; we use raw REST on stable paths only, so the warning is noise.
                    warnings.filterwarnings(
                        "ignore",
                        message=r"Kubernetes version .* is not supported",
                        category=UserWarning,
                    )
                    await api
        except BaseException as exc:
            if transport is not None:
                await transport.aclose()
            await _close_session(api)
            translated = (
                _translate_exception(exc, operation) if isinstance(exc, Exception) else None
            )
            if translated is None:
                raise
            raise translated from exc
        return cls(
            api,
            namespace=namespace or api.namespace,
            user_agent=user_agent,
            timeout=timeout,
            transport=transport,
            rate_limit=rate_limit,
        )

    @property
    def namespace(self) -> str:
        """The client namespace used when a method gets ``namespace=None``."""
        return self._namespace

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` ran."""
        return self._closed

    @property
    def rate_limit(self) -> RateLimit | None:
        """The client-side request rate limit, if any (``BUBU_K8S_QPS``)."""
        return self._rate_limit

    @property
    def http_version(self) -> str:
        """``"HTTP/2"`` on the shared connection, ``"HTTP/1.1"`` on the httpx fallback."""
        return "HTTP/2" if self._h2 is not None else "HTTP/1.1"

    @property
    def connections_opened(self) -> int | None:
        """TCP+TLS connections opened so far over HTTP/2 (None on the HTTP/1.1 fallback)."""
        return self._h2.connections_opened if self._h2 is not None else None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (and kr8s's httpx session); safe to call more than once.

        kr8s has no public close, so we close its httpx session.
        """
        if self._closed:
            return
        self._closed = True
        if self._live is not None:
            await self._live.aclose()
        if self._h2 is not None:
            await self._h2.aclose()
        await _close_session(self._api)

    # -- verbs -------------------------------------------------------------------------

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        """GET one object directly (never a LIST; the runner Role has no ``list``)."""
        return await self._request("GET", kind, name=name, namespace=namespace)

    async def get_live(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        """GET an object this client reads again and again; later reads come from a watch.

        The first call GETs and starts a watch on the object (``LiveObjects`` in
        ``bubu._k8s.watch``); while that watch is established, calls return the last state it
        delivered without a request. Over the HTTP/1.1 fallback a watch would hold a connection
        of its own, so there every call is a GET. The object returned from memory is shared
        between callers: read it, do not change it.
        """
        if self._h2 is None:
            return await self.get(kind, name, namespace)
        self._check_open()
        if self._live is None:
            from bubu._k8s.watch import LiveObjects

            self._live = LiveObjects(self)
        return await self._live.get(kind, name, namespace)

    async def create(
        self, kind: Kind, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """POST a new object; ``apiVersion`` and ``kind`` are filled in when missing.

        The server drops any ``status`` stanza (docs/contract/index.md#apiserver): write status
        through ``merge_patch(..., subresource="status")``.
        """
        payload = {"apiVersion": kind.api_version, "kind": kind.kind, **body}
        return await self._request("POST", kind, namespace=namespace, body=payload)

    async def replace(
        self,
        kind: Kind,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT the whole object; ``metadata.resourceVersion`` in ``body`` makes it conditional.

        Raises:
            ConflictError: the resourceVersion is stale (HTTP 409).
        """
        payload = {"apiVersion": kind.api_version, "kind": kind.kind, **body}
        return await self._request(
            "PUT", kind, name=name, namespace=namespace, subresource=subresource, body=payload
        )

    async def merge_patch(
        self,
        kind: Kind,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Send an RFC 7386 JSON merge patch (``application/merge-patch+json``).

        ``None`` values delete keys; lists are replaced whole.
        """
        return await self._request(
            "PATCH",
            kind,
            name=name,
            namespace=namespace,
            subresource=subresource,
            body=patch,
            content_type=_MERGE_PATCH,
        )

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        """DELETE one object."""
        await self._request("DELETE", kind, name=name, namespace=namespace)

    async def watch(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        *,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch one object and yield ``(event_type, object)`` pairs.

        Uses ``fieldSelector=metadata.name=<name>`` on the collection, which needs only the
        ``watch`` verb (docs/deploying.md#rbac-consequences). The iterator ends when the server
        closes the stream (``timeout_seconds`` bounds that on the server side); BOOKMARK events are
        skipped. Over HTTP/2 the watch is one more stream on the client's connection, and closing
        the iterator early resets just that stream. ``on_open`` is called once the server has
        accepted the watch (from then on every change after ``resource_version`` arrives here).

        Raises:
            WatchExpiredError: an ERROR event with 410 Gone: GET the object and watch again
                from its resourceVersion (kr8s would loop on the stale version).
            KubernetesError: any other ERROR event or HTTP failure.
        """
        params: dict[str, str] = {"watch": "1", "fieldSelector": f"metadata.name={name}"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        ns = self._ns(kind, namespace)
        operation = f"WATCH {kind.plural}/{name}"
        self._check_open()
        if self._rate_limit is not None:
            await self._rate_limit.wait()
        lines = (
            self._watch_h2(kind, ns, params, operation, on_open)
            if self._h2 is not None
            else self._watch_httpx(kind, ns, params, operation, on_open)
        )
        try:
            async for line in lines:
                if not line.strip():
                    continue
                try:
                    event = _DECODE.decode(line)
                except msgspec.DecodeError as exc:
                    raise KubernetesError(
                        f"{operation}: malformed watch event: {exc}", reason="BadWatchEvent"
                    ) from exc
                if not isinstance(event, dict):
                    raise KubernetesError(
                        f"{operation}: malformed watch event: not an object",
                        reason="BadWatchEvent",
                    )
                etype = str(event.get("type", ""))
                obj = event.get("object")
                if not isinstance(obj, dict):
                    obj = {}
                if etype == "ERROR":
                    code = obj.get("code")
                    raise k8s_errors.from_status(
                        code if isinstance(code, int) else 500,
                        _ENCODE.encode(obj),
                        operation=operation,
                    )
                if etype == "BOOKMARK":
                    continue
                yield etype, obj
        except KubernetesError:
            raise
        except Exception as exc:
            translated = _translate_exception(exc, operation)
            if translated is None:
                raise
            raise translated from exc
        finally:
            # Close the HTTP stream now (an HTTP/2 RST_STREAM), not when it is collected.
            await lines.aclose()

    async def _watch_h2(
        self,
        kind: Kind,
        ns: str | None,
        params: Mapping[str, str],
        operation: str,
        on_open: Callable[[], None] | None,
    ) -> AsyncGenerator[bytes]:
        assert self._h2 is not None
        target = f"{_path(kind, ns, None, None)}?{urllib.parse.urlencode(params)}".encode()
        async with self._h2.stream(
            b"GET", target, self._headers_h2(None), timeout=self._timeout
        ) as response:
            if response.status >= 400:
                raise k8s_errors.from_status(
                    response.status,
                    await response.read(),
                    operation=operation,
                    retry_after=response.header(b"retry-after"),
                )
            if on_open is not None:
                on_open()
            pending = b""
            async for chunk in response.chunks():
                pending += chunk
                if b"\n" not in chunk:
                    continue
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line
            if pending:
                yield pending

    async def _watch_httpx(
        self,
        kind: Kind,
        ns: str | None,
        params: Mapping[str, str],
        operation: str,
        on_open: Callable[[], None] | None,
    ) -> AsyncGenerator[bytes]:
        import httpx

        # Long-lived stream: bound connect/write, never the gap between events.
        timeout = httpx.Timeout(self._timeout, read=None)
        async with self._api.call_api(
            "GET",
            version=kind.api_version,
            namespace=ns,
            url=kind.plural,
            raise_for_status=False,
            stream=True,
            params=params,
            headers=self._headers(None),
            timeout=timeout,
        ) as response:
            if response.is_error:
                body = await response.aread()
                raise k8s_errors.from_status(
                    response.status_code,
                    body,
                    operation=operation,
                    retry_after=response.headers.get("Retry-After"),
                )
            if on_open is not None:
                on_open()
            async for line in response.aiter_lines():
                yield line.encode()

    # -- plumbing ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("KubeClient is closed")

    def _ns(self, kind: Kind, namespace: str | None) -> str | None:
        if not kind.namespaced:
            return None
        return namespace or self._namespace

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent, "Accept": _JSON}
        if content_type:
            headers["Content-Type"] = content_type
        token = getattr(self._api.auth, "token", None)
        if token:
            # Per request, so a token re-read after a 401 is used without a new session.
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _refresh_h2_headers(self) -> None:
        token = getattr(self._api.auth, "token", None) or None
        self._token = token
        headers = [(b"user-agent", self._user_agent.encode()), (b"accept", _JSON.encode())]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        self._h2_headers = headers

    def _headers_h2(self, content_type: str | None) -> list[tuple[bytes, bytes]]:
        if (getattr(self._api.auth, "token", None) or None) != self._token:
            self._refresh_h2_headers()  # re-read after a 401 (projected token rotation)
        if content_type is None:
            return self._h2_headers
        return [*self._h2_headers, (b"content-type", content_type.encode())]

    async def _reauthenticate(self) -> None:
        # A projected token may have rotated: re-read credentials once.
        with contextlib.suppress(ValueError):
            await self._api.auth.reauthenticate()
        if self._h2 is not None and getattr(self._api.auth, "client_cert_file", None):
            # Client certificates are connection-level: new TLS material, new connection.
            auth: Any = self._api.auth
            ctx = await auth.ssl_context()
            if not isinstance(ctx, bool):
                self._h2.set_ssl_context(ctx)

    async def _request(
        self,
        method: str,
        kind: Kind,
        *,
        name: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = _JSON,
    ) -> dict[str, Any]:
        self._check_open()
        ns = self._ns(kind, namespace)
        # Validates name/namespace/subresource before any I/O.
        path = _path(kind, ns, name, subresource)
        content = None if body is None else _ENCODE.encode(body)
        if self._rate_limit is not None:
            await self._rate_limit.wait()
        reauthenticated = False
        while True:
            try:
                if self._h2 is not None:
                    response = await self._h2.request(
                        method.encode(),
                        path.encode(),
                        self._headers_h2(content_type if content is not None else None),
                        content,
                        timeout=self._timeout,
                    )
                    status_code, raw = response.status, response.body
                    retry_after = response.header(b"retry-after")
                else:
                    status_code, raw, retry_after = await self._request_httpx(
                        method,
                        kind,
                        ns=ns,
                        name=name,
                        subresource=subresource,
                        content=content,
                        content_type=content_type,
                    )
            except Exception as exc:
                operation = _operation(method, kind, name, subresource, ns)
                translated = _translate_exception(exc, operation)
                if translated is None:
                    raise
                raise translated from exc
            if status_code == 401 and not reauthenticated:
                reauthenticated = True
                await self._reauthenticate()
                continue
            break
        if status_code >= 400:
            raise k8s_errors.from_status(
                status_code,
                raw,
                operation=_operation(method, kind, name, subresource, ns),
                retry_after=retry_after,
            )
        if not raw:
            return {}
        try:
            data = _DECODE.decode(raw)
        except msgspec.DecodeError as exc:
            raise KubernetesError(
                f"{_operation(method, kind, name, subresource, ns)}: the server answered with "
                "invalid JSON",
                reason="BadResponse",
            ) from exc
        return data if isinstance(data, dict) else {"items": data}

    async def _request_httpx(
        self,
        method: str,
        kind: Kind,
        *,
        ns: str | None,
        name: str | None,
        subresource: str | None,
        content: bytes | None,
        content_type: str,
    ) -> tuple[int, bytes, str | None]:
        rel = "/".join(p for p in (kind.plural, name, subresource) if p)
        async with self._api.call_api(
            method,
            version=kind.api_version,
            namespace=ns,
            url=rel,
            raise_for_status=False,
            content=content,
            headers=self._headers(content_type if content is not None else None),
            timeout=self._timeout,
        ) as response:
            return response.status_code, response.content, response.headers.get("Retry-After")


def _path(kind: Kind, ns: str | None, name: str | None, subresource: str | None) -> str:
    """The REST path; names are percent-encoded so a stray ``/`` or ``?`` stays in its segment."""
    quote = urllib.parse.quote
    return kind.path(
        namespace=quote(ns, safe="") if ns else ns,
        name=quote(name, safe="") if name else name,
        subresource=subresource,
    )


def _operation(
    method: str, kind: Kind, name: str | None, subresource: str | None, ns: str | None
) -> str:
    rel = "/".join(p for p in (kind.plural, name, subresource) if p)
    return f"{method} {rel}" + (f" in namespace {ns}" if ns else "")


async def _open_http2(api: Any, user_agent: str, timeout_s: float) -> H2Transport | None:
    """Open the HTTP/2 connection with a ``GET /version``; None when HTTP/2 is not possible."""
    import ssl

    from bubu._k8s.transport import H2Transport, NoHTTP2Error

    auth = api.auth
    server = str(auth.server or "")
    if not server.startswith("https://") or auth.proxy:
        return None  # plain HTTP (tests, proxies) or an HTTP proxy: kr8s's httpx session
    ctx = await auth.ssl_context()
    if isinstance(ctx, bool):
        ctx = ssl.create_default_context()
    transport = H2Transport(
        server, ctx, server_name=auth.tls_server_name or None, connect_timeout=timeout_s
    )
    headers = [(b"user-agent", user_agent.encode()), (b"accept", _JSON.encode())]
    if auth.token:
        headers.append((b"authorization", f"Bearer {auth.token}".encode()))
    try:
        response = await transport.request(b"GET", b"/version", headers, timeout=timeout_s)
    except NoHTTP2Error:
        await transport.aclose()
        return None
    except BaseException:
        await transport.aclose()
        raise
    if response.status >= 400:
        await transport.aclose()
        raise k8s_errors.from_status(
            response.status, response.body, operation="GET /version", retry_after=None
        )
    return transport


async def _close_session(api: Any) -> None:
    """Close kr8s's httpx session (kr8s has no public close)."""
    session = getattr(api, "_session", None)
    if session is not None:
        api._session = None
        with contextlib.suppress(Exception):
            await session.aclose()


def _translate_exception(exc: Exception, operation: str) -> KubernetesError | None:
    """Map a transport-level exception to a retryable ``KubernetesError``; None to re-raise."""
    if isinstance(exc, KubernetesError):
        return exc
    if isinstance(exc, TimeoutError | OSError):
        return k8s_errors.from_transport_error(exc, operation=operation)
    import httpx
    from kr8s import APITimeoutError

    if isinstance(exc, httpx.TransportError | APITimeoutError):
        return k8s_errors.from_transport_error(exc, operation=operation)
    return None
