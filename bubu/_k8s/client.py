"""KubeClient: the SDK's one Kubernetes client (the only module that imports kr8s).

kr8s supplies configuration loading (kubeconfig, exec plugins, service account) and an httpx
session; every request goes through ``Api.call_api`` with a verb and path we choose, because
kr8s's object helpers do not fit the engram-runner Role (crds.md 7.3, 10):

* ``get`` is a direct GET; kr8s's ``get(name)`` is a LIST the Role does not allow.
* ``replace`` is a real HTTP PUT (EffectClaim writes need ``update``, crds.md 0.5).
* ``watch`` watches one object with ``fieldSelector=metadata.name=<n>`` (the ``watch`` verb only).
* 403 is not retried: kr8s re-authenticates three times on 401/403, which turns a webhook denial
  into four round trips (crds.md 0.8). We re-authenticate once, on 401 only.

Configuration order is in-cluster, then ``$KUBECONFIG``, then ``~/.kube/config``
(go-sdk-core.md c.14). Errors are translated in ``bubu._k8s.errors``; nothing above this
package sees kr8s or httpx exceptions.

kr8s and httpx are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from bubu._k8s import errors as k8s_errors
from bubu._k8s.resources import Kind
from bubu.errors import KubernetesError

if TYPE_CHECKING:
    import kr8s.asyncio

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_USER_AGENT", "SERVICE_ACCOUNT_DIR", "KubeClient"]

DEFAULT_USER_AGENT: Final = "bubu-sdk-python"
DEFAULT_TIMEOUT: Final = 30.0  # BUBU_K8S_TIMEOUT default (go-sdk-core.md b.5)
SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"

_MERGE_PATCH: Final = "application/merge-patch+json"
_JSON: Final = "application/json"


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


class KubeClient:
    """An async Kubernetes REST client speaking raw verbs on typed ``Kind`` paths.

    Build one with ``await KubeClient.connect(...)`` and use it as an async context manager
    (or call ``aclose()``). Methods take a ``Kind`` from ``bubu._k8s.resources``; a
    ``namespace`` of None means the client namespace. Every method raises a
    ``bubu.errors.KubernetesError`` (``NotFoundError``, ``ConflictError``,
    ``ForbiddenError``, ``WatchExpiredError``...) with ``status_code``, ``reason``,
    ``retryable`` and ``retry_after`` set.

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
    ) -> None:
        """Wrap an authenticated kr8s ``Api``; prefer ``connect()``."""
        self._api = api
        self._namespace = namespace
        self._user_agent = user_agent
        self._timeout = timeout
        self._closed = False

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
    ) -> KubeClient:
        """Load configuration, authenticate and check the server version.

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

        Raises:
            KubernetesError: no usable configuration, or the server cannot be reached.
        """
        import kr8s.asyncio

        kwargs: dict[str, Any] = {"namespace": namespace, "url": url}
        if kubeconfig:
            kwargs["kubeconfig"] = kubeconfig
            kwargs["serviceaccount"] = ""
        elif url is None and _in_cluster(service_account_dir):
            # Go order: in-cluster first (c.14). kr8s tries the kubeconfig first, so point it
            # at a path that cannot exist; its loader then falls through to the service account.
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
        # so one client's aclose() never breaks another (style.md 6.1).
        api = kr8s.asyncio.Api(bypass_factory=True, context=None, **kwargs)
        api.timeout = timeout
        try:
            with warnings.catch_warnings():
                # kr8s warns when the server is newer than the versions it was tested with; we
                # use raw REST on stable paths only, so for engrams the warning is noise.
                warnings.filterwarnings(
                    "ignore",
                    message=r"Kubernetes version .* is not supported",
                    category=UserWarning,
                )
                await api
        except ValueError as exc:
            await _close_session(api)
            where = kubeconfig or kubeconfig_fallback or os.environ.get("KUBECONFIG")
            raise KubernetesError(
                f"{operation}: no in-cluster config and no usable kubeconfig at "
                f"{where or '~/.kube/config'}: {exc}",
                reason="NoConfig",
            ) from exc
        except BaseException as exc:
            await _close_session(api)
            translated = (
                _translate_exception(exc, operation) if isinstance(exc, Exception) else None
            )
            if translated is None:
                raise
            raise translated from exc
        return cls(
            api, namespace=namespace or api.namespace, user_agent=user_agent, timeout=timeout
        )

    @property
    def namespace(self) -> str:
        """The client namespace used when a method gets ``namespace=None``."""
        return self._namespace

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` ran."""
        return self._closed

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
        """Close the HTTP session; safe to call more than once.

        kr8s has no public close (python-stack.md 3), so we close its httpx session.
        """
        if self._closed:
            return
        self._closed = True
        await _close_session(self._api)

    # -- verbs -------------------------------------------------------------------------

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        """GET one object directly (never a LIST; the runner Role has no ``list``)."""
        return await self._request("GET", kind, name=name, namespace=namespace)

    async def create(
        self, kind: Kind, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """POST a new object; ``apiVersion`` and ``kind`` are filled in when missing.

        The server drops any ``status`` stanza (crds.md 10): write status through
        ``merge_patch(..., subresource="status")``.
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
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch one object and yield ``(event_type, object)`` pairs.

        Uses ``fieldSelector=metadata.name=<name>`` on the collection, which needs only the
        ``watch`` verb (crds.md 7.4). The iterator ends when the server closes the stream
        (``timeout_seconds`` bounds that on the server side); BOOKMARK events are skipped.

        Raises:
            WatchExpiredError: an ERROR event with 410 Gone: GET the object and watch again
                from its resourceVersion (kr8s would loop on the stale version).
            KubernetesError: any other ERROR event or HTTP failure.
        """
        import httpx

        params: dict[str, str] = {"watch": "1", "fieldSelector": f"metadata.name={name}"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        ns = self._ns(kind, namespace)
        operation = f"WATCH {kind.plural}/{name}"
        # Long-lived stream: bound connect/write, never the gap between events.
        timeout = httpx.Timeout(self._timeout, read=None)
        self._check_open()
        try:
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
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError as exc:
                        raise KubernetesError(
                            f"{operation}: malformed watch event: {exc}", reason="BadWatchEvent"
                        ) from exc
                    etype = str(event.get("type", ""))
                    obj = event.get("object")
                    if not isinstance(obj, dict):
                        obj = {}
                    if etype == "ERROR":
                        code = obj.get("code")
                        raise k8s_errors.from_status(
                            code if isinstance(code, int) else 500,
                            json.dumps(obj),
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
        kind.path(namespace=ns or "_", name=name, subresource=subresource)
        rel = "/".join(p for p in (kind.plural, name, subresource) if p)
        operation = f"{method} {rel}" + (f" in namespace {ns}" if ns else "")
        content = None if body is None else json.dumps(body, separators=(",", ":"))
        reauthenticated = False
        while True:
            try:
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
                    status_code = response.status_code
                    raw = response.content
                    retry_after = response.headers.get("Retry-After")
            except Exception as exc:
                translated = _translate_exception(exc, operation)
                if translated is None:
                    raise
                raise translated from exc
            if status_code == 401 and not reauthenticated:
                # A projected token may have rotated: re-read credentials once.
                reauthenticated = True
                with contextlib.suppress(ValueError):
                    await self._api.auth.reauthenticate()
                continue
            break
        if status_code >= 400:
            raise k8s_errors.from_status(
                status_code, raw, operation=operation, retry_after=retry_after
            )
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise KubernetesError(
                f"{operation}: the server answered with invalid JSON", reason="BadResponse"
            ) from exc
        return data if isinstance(data, dict) else {"items": data}


async def _close_session(api: Any) -> None:
    """Close kr8s's httpx session (kr8s has no public close, python-stack.md 3)."""
    session = getattr(api, "_session", None)
    if session is not None:
        api._session = None
        with contextlib.suppress(Exception):
            await session.aclose()


def _translate_exception(exc: Exception, operation: str) -> KubernetesError | None:
    """Map a transport-level exception to a retryable ``KubernetesError``; None to re-raise."""
    import httpx
    from kr8s import APITimeoutError

    if isinstance(exc, KubernetesError):
        return exc
    if isinstance(exc, httpx.TransportError | APITimeoutError | TimeoutError | OSError):
        return k8s_errors.from_transport_error(exc, operation=operation)
    return None
