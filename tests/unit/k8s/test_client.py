"""KubeClient request building and error translation, against a fake kr8s Api (no sockets)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bubu._k8s import errors as k8s_errors
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import ENGRAM_TEMPLATE, SECRET, STEP_RUN, STORY
from bubu.errors import (
    ConflictError,
    ForbiddenError,
    KubernetesError,
    NotFoundError,
    WatchExpiredError,
)


class FakeAuth:
    def __init__(self) -> None:
        self.token: str | None = "t0"
        self.reauths = 0

    async def reauthenticate(self) -> None:
        self.reauths += 1
        self.token = f"t{self.reauths}"


class FakeApi:
    def __init__(self, responses: list[Any]) -> None:
        self.responses = responses
        self.calls: list[dict[str, Any]] = []
        self.auth = FakeAuth()
        self._session: Any = None

    @contextlib.asynccontextmanager
    async def call_api(self, method: str, **kw: Any) -> AsyncIterator[httpx.Response]:
        self.calls.append({"method": method, **kw})
        item = self.responses.pop(0)
        if isinstance(item, BaseException):
            raise item
        yield item


def status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "code": code, "reason": reason, "message": message}
    ).encode()


def client(*responses: Any) -> tuple[KubeClient, FakeApi]:
    api = FakeApi(list(responses))
    return KubeClient(api, namespace="ns1", user_agent="ua/1", timeout=7.0), api


async def test_get_is_a_direct_get_in_client_namespace() -> None:
    kube, api = client(httpx.Response(200, json={"metadata": {"name": "s"}}))
    obj = await kube.get(STEP_RUN, "s")
    assert obj == {"metadata": {"name": "s"}}
    call = api.calls[0]
    assert call["method"] == "GET"
    assert call["version"] == "runs.bubustack.io/v1alpha1"
    assert call["namespace"] == "ns1" and call["url"] == "stepruns/s"
    assert call["raise_for_status"] is False
    assert call["headers"]["User-Agent"] == "ua/1"
    assert call["headers"]["Authorization"] == "Bearer t0"
    assert call["timeout"] == 7.0


async def test_cluster_scoped_kind_has_no_namespace() -> None:
    kube, api = client(httpx.Response(200, json={}))
    await kube.get(ENGRAM_TEMPLATE, "tpl", namespace="ignored")
    assert api.calls[0]["namespace"] is None
    assert api.calls[0]["version"] == "catalog.bubustack.io/v1alpha1"


async def test_core_kind_path() -> None:
    assert SECRET.path(namespace="a", name="b") == "/api/v1/namespaces/a/secrets/b"
    assert STORY.path(namespace="a", name="b", subresource="status") == (
        "/apis/bubustack.io/v1alpha1/namespaces/a/stories/b/status"
    )


async def test_replace_is_put_with_body_and_kind() -> None:
    kube, api = client(httpx.Response(200, json={"ok": True}))
    await kube.replace(
        STEP_RUN, "s", {"metadata": {"name": "s", "resourceVersion": "5"}}, namespace="other"
    )
    call = api.calls[0]
    assert call["method"] == "PUT" and call["namespace"] == "other"
    body = json.loads(call["content"])
    assert body["apiVersion"] == "runs.bubustack.io/v1alpha1" and body["kind"] == "StepRun"
    assert body["metadata"]["resourceVersion"] == "5"


async def test_merge_patch_content_type_and_subresource() -> None:
    kube, api = client(httpx.Response(200, json={}))
    await kube.merge_patch(STEP_RUN, "s", {"status": {"retries": 0}}, subresource="status")
    call = api.calls[0]
    assert call["method"] == "PATCH" and call["url"] == "stepruns/s/status"
    assert call["headers"]["Content-Type"] == "application/merge-patch+json"
    assert json.loads(call["content"]) == {"status": {"retries": 0}}


@pytest.mark.parametrize(
    ("code", "reason", "exc_type", "retryable"),
    [
        (404, "NotFound", NotFoundError, False),
        (409, "Conflict", ConflictError, True),
        (403, "Forbidden", ForbiddenError, False),
        (422, "Invalid", KubernetesError, False),
        (429, "TooManyRequests", KubernetesError, True),
        (500, "InternalError", KubernetesError, True),
        (504, "Timeout", KubernetesError, True),
        (410, "Expired", WatchExpiredError, False),
    ],
)
async def test_http_errors_translate(
    code: int, reason: str, exc_type: type[KubernetesError], retryable: bool
) -> None:
    kube, _ = client(
        httpx.Response(
            code, content=status_body(code, reason, "the message"), headers={"Retry-After": "3"}
        )
    )
    with pytest.raises(exc_type) as info:
        await kube.get(STEP_RUN, "s")
    err = info.value
    assert type(err) is exc_type
    assert err.status_code == code and err.reason == reason
    assert err.retryable is retryable
    assert "the message" in str(err) and "stepruns/s" in str(err)
    assert err.retry_after == 3.0


async def test_webhook_denial_403_is_not_reauthenticated() -> None:
    kube, api = client(
        httpx.Response(
            403, content=status_body(403, "Forbidden", 'admission webhook "x" denied the request')
        )
    )
    with pytest.raises(ForbiddenError, match="denied the request"):
        await kube.create(STEP_RUN, {"metadata": {"name": "s"}})
    assert len(api.calls) == 1 and api.auth.reauths == 0


async def test_401_reauthenticates_once_with_new_token() -> None:
    kube, api = client(httpx.Response(401, text="no"), httpx.Response(200, json={"a": 1}))
    assert await kube.get(STEP_RUN, "s") == {"a": 1}
    assert api.auth.reauths == 1
    assert api.calls[1]["headers"]["Authorization"] == "Bearer t1"


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), ConnectionResetError("reset")],
)
async def test_transport_errors_are_retryable(exc: Exception) -> None:
    kube, _ = client(exc)
    with pytest.raises(KubernetesError) as info:
        await kube.get(STEP_RUN, "s")
    assert info.value.retryable and info.value.__cause__ is exc
    assert info.value.status_code is None


async def test_empty_name_rejected_before_io() -> None:
    kube, api = client()
    with pytest.raises(ValueError, match="name must not be empty"):
        await kube.get(STEP_RUN, "")
    assert api.calls == []


async def test_watch_single_object_and_error_event() -> None:
    lines = "\n".join(
        [
            json.dumps({"type": "ADDED", "object": {"metadata": {"name": "s"}}}),
            json.dumps({"type": "BOOKMARK", "object": {}}),
            json.dumps({"type": "MODIFIED", "object": {"metadata": {"name": "s"}, "x": 1}}),
            json.dumps(
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": "too old",
                    },
                }
            ),
        ]
    ).encode()
    kube, api = client(httpx.Response(200, content=lines))
    seen: list[str] = []
    with pytest.raises(WatchExpiredError, match="too old"):
        async for etype, _obj in kube.watch(
            STEP_RUN, "s", resource_version="7", timeout_seconds=30
        ):
            seen.append(etype)
    assert seen == ["ADDED", "MODIFIED"]
    params = api.calls[0]["params"]
    assert params == {
        "watch": "1",
        "fieldSelector": "metadata.name=s",
        "resourceVersion": "7",
        "timeoutSeconds": "30",
    }
    assert api.calls[0]["url"] == "stepruns" and api.calls[0]["stream"] is True


async def test_aclose_idempotent_and_blocks_use() -> None:
    kube, api = client()

    class Session:
        closed = 0

        async def aclose(self) -> None:
            Session.closed += 1

    api._session = Session()
    async with kube:
        pass
    await kube.aclose()
    assert Session.closed == 1 and kube.closed
    with pytest.raises(RuntimeError, match="closed"):
        await kube.get(STEP_RUN, "s")


def test_parse_retry_after_forms() -> None:
    assert k8s_errors.parse_retry_after("2") == 2.0
    assert k8s_errors.parse_retry_after("-1") == 0.0
    assert k8s_errors.parse_retry_after("soon") is None
    assert k8s_errors.parse_retry_after(None) is None
    assert k8s_errors.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


async def test_connect_without_config_names_the_kubeconfig(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesError, match="no usable kubeconfig") as info:
        await KubeClient.connect(service_account_dir=str(tmp_path / "nosa"))
    assert info.value.reason == "NoConfig"
