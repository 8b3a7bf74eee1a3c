"""One connection per client, against the real API server (issue 15; docs/k8s-transport.md).

A loopback TCP relay (``tests/_controlplane/tcp_proxy.py``) sits between the SDK and the
kube-apiserver and counts the connections it accepts. TLS goes through it untouched, so one
accepted connection is one TCP connect and one TLS handshake. The StoryTrigger decisions come
from the real operator (``operator`` fixture); the identity is the admin, which may watch, so
every decision wait is a watch stream on the same connection.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.conftest as _root_conftest
from bubu import _scope
from bubu._k8s import client as client_module
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import CONFIG_MAP, STORY, STORY_TRIGGER, Kind
from bubu._k8s.shared import aclose_shared_client, shared_client
from bubu._k8s.transport import H2Transport
from bubu._runtime.sources import MappingSource
from bubu._triggers import start_story, start_story_with_token
from bubu.errors import KubernetesError, NotFoundError
from tests._controlplane import workloads
from tests._controlplane.tcp_proxy import TcpProxy

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        k8s_namespace,
        make_identity,
    )

pytestmark = pytest.mark.integration


NAMESPACE = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
TRIGGERS = 300
IN_FLIGHT = 16


@pytest.fixture
def relay(controlplane: Any) -> Iterator[TcpProxy]:
    url = urllib.parse.urlsplit(controlplane.url)
    assert url.hostname and url.port
    with TcpProxy(url.hostname, url.port) as proxy:
        yield proxy


@pytest.fixture
def relayed_kubeconfig(
    controlplane: Any, relay: TcpProxy, k8s_namespace: str, tmp_path: Path
) -> Path:
    path: Path = controlplane.write_kubeconfig(
        tmp_path / "relayed.kubeconfig", server=relay.url, namespace=k8s_namespace
    )
    return path


async def seed_story(admin: KubeClient, name: str = "story", version: str = "") -> None:
    """A Story with one condition step (the operator, when running, finishes its runs)."""
    extra = {"version": version} if version else {}
    steps = [{"name": "start", "type": "condition"}]
    await admin.create(STORY, workloads.story(name, steps=steps, **extra))


@pytest.fixture
def story(controlplane: Any, operator: Any, k8s_namespace: str) -> None:
    """Story ``story``: one condition step, so the operator runs each StoryRun to the end."""
    quick = workloads.story(steps=[{"name": "start", "type": "condition"}])
    workloads.seed(controlplane, k8s_namespace, quick)


class CountingKube:
    """Delegates to a KubeClient and counts watches (each decision wait opens one)."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self.watches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    @property
    def namespace(self) -> str:
        return self._kube.namespace

    async def watch(self, *args: Any, **kw: Any) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watches += 1
        async for event in self._kube.watch(*args, **kw):
            yield event


async def trigger_many(n: int = TRIGGERS) -> list[Any]:
    """``n`` start_story calls, ``IN_FLIGHT`` at a time, half of them with a token."""
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> Any:
        async with sem:
            if i % 2:
                return await start_story_with_token("story", f"evt-{i}", {"i": i})
            return await start_story("story", {"i": i})

    return await asyncio.gather(*(one(i) for i in range(n)))


def trigger_env(ns: str) -> dict[str, str]:
    return {"BUBU_TARGET_STORY_NAMESPACE": ns, "BUBU_K8S_OPERATION_TIMEOUT": "60s"}


async def test_300_triggers_in_a_run_scope_use_one_tls_connection(
    story: None, relay: TcpProxy, relayed_kubeconfig: Path, k8s_namespace: str
) -> None:
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig)) as kube:
        counting = CountingKube(kube)
        scope = _scope.RunScope(source=MappingSource(trigger_env(k8s_namespace)), kube=counting)  # type: ignore[arg-type]
        with _scope.activate(scope):
            results = await trigger_many()
        assert kube.http_version == "HTTP/2" and kube.connections_opened == 1
    assert [r.decision for r in results] == ["Created"] * TRIGGERS
    assert counting.watches >= TRIGGERS  # every decision was awaited on a watch stream
    assert relay.accepted == 1


async def test_300_triggers_outside_a_run_scope_share_one_client(
    story: None,
    relay: TcpProxy,
    relayed_kubeconfig: Path,
    k8s_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in trigger_env(k8s_namespace).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KUBECONFIG", str(relayed_kubeconfig))
    connects = 0
    real_connect = client_module.KubeClient.connect.__func__  # type: ignore[attr-defined]

    async def counting_connect(cls: type[KubeClient], **kw: Any) -> KubeClient:
        nonlocal connects
        connects += 1
        result: KubeClient = await real_connect(cls, **kw)
        return result

    monkeypatch.setattr(client_module.KubeClient, "connect", classmethod(counting_connect))
    assert _scope.current() is None
    results = await trigger_many()
    kube = await shared_client()
    assert [r.decision for r in results] == ["Created"] * TRIGGERS
    assert connects == 1 and kube.connections_opened == 1 and relay.accepted == 1
    await aclose_shared_client()
    assert kube.closed


def test_shared_client_is_closed_when_asyncio_run_ends(
    controlplane: Any, relay: TcpProxy, relayed_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(relayed_kubeconfig))
    clients: list[KubeClient] = []

    async def main() -> None:
        first = await shared_client()
        again = await shared_client()
        assert first is again
        await first.get(NAMESPACE, "default")
        clients.append(first)

    asyncio.run(main())
    assert clients[0].closed  # closed by the loop's shutdown, not by the garbage collector
    assert relay.accepted == 1
    asyncio.run(main())  # a new loop gets a new client
    assert clients[1] is not clients[0] and clients[1].closed
    assert relay.accepted == 2


async def test_a_failed_shared_client_is_not_remembered(
    relayed_kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(KubernetesError, match="no usable kubeconfig"):
        await shared_client()
    monkeypatch.setenv("KUBECONFIG", str(relayed_kubeconfig))
    kube = await shared_client()
    assert (await kube.get(NAMESPACE, "default"))["metadata"]["name"] == "default"
    await aclose_shared_client()


async def test_abandoned_watches_neither_use_up_streams_nor_stall_the_connection(
    relay: TcpProxy, relayed_kubeconfig: Path
) -> None:
    # 250 watches closed after their first event while the object keeps changing with 30 KB
    # values: more than the server's 100 concurrent streams, and (without the resets) enough
    # unacknowledged data to drain the connection's flow-control window.
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig)) as kube:
        obj = await kube.create(CONFIG_MAP, {"metadata": {"generateName": "w-"}, "data": {}})
        name = obj["metadata"]["name"]
        stop = asyncio.Event()

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                await kube.merge_patch(CONFIG_MAP, name, {"data": {"v": str(i) * 30000}})

        task = asyncio.create_task(writer())
        try:
            for _ in range(250):
                async for etype, _obj in kube.watch(CONFIG_MAP, name, timeout_seconds=300):
                    assert etype == "ADDED"
                    break
        finally:
            stop.set()
            await task
        assert (await kube.get(CONFIG_MAP, name))["metadata"]["name"] == name
        assert kube.connections_opened == 1
    assert relay.accepted == 1


async def test_bodies_larger_than_the_flow_control_windows(
    relay: TcpProxy, relayed_kubeconfig: Path
) -> None:
    value = "".join(chr(0x41 + i % 26) for i in range(900_000))  # > 256 KiB server window
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig)) as kube:
        obj = await kube.create(
            CONFIG_MAP, {"metadata": {"generateName": "big-"}, "data": {"v": value}}
        )
        got = await kube.get(CONFIG_MAP, obj["metadata"]["name"])
    assert got["data"]["v"] == value
    assert relay.accepted == 1


async def test_a_cut_connection_fails_what_was_in_flight_retryably_then_reconnects(
    relay: TcpProxy, relayed_kubeconfig: Path
) -> None:
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig)) as kube:
        obj = await kube.create(CONFIG_MAP, {"metadata": {"generateName": "cut-"}, "data": {}})
        name, rv = obj["metadata"]["name"], obj["metadata"]["resourceVersion"]
        opened = asyncio.Event()

        async def watch() -> None:
            stream = kube.watch(CONFIG_MAP, name, resource_version=rv, timeout_seconds=300)
            async for _ in stream:
                opened.set()  # an event came through: the watch stream is open on the server

        task = asyncio.create_task(watch())
        # A change after `rv`: the watch delivers it whenever its request reaches the server.
        await kube.merge_patch(CONFIG_MAP, name, {"data": {"k": "v"}})
        await asyncio.wait_for(opened.wait(), 60)
        assert relay.cut() == 1
        with pytest.raises(KubernetesError) as info:
            await task
        assert info.value.retryable and info.value.reason == "ConnectionError"
        assert (await kube.get(CONFIG_MAP, name))["metadata"]["name"] == name
        assert kube.connections_opened == 2
    assert relay.accepted == 2


async def test_a_silent_connection_is_found_by_ping_and_replaced(
    controlplane: Any, relay: TcpProxy
) -> None:
    transport = H2Transport(
        relay.url, controlplane.ssl_context(admin=True), read_idle_timeout=0.3, ping_timeout=0.3
    )
    headers = [(b"accept", b"application/json")]
    try:
        assert (await transport.request(b"GET", b"/version", headers, timeout=10)).status == 200
        relay.freeze()
        with pytest.raises(TimeoutError, match="did not answer a PING"):
            await transport.request(b"GET", b"/version", headers, timeout=30)
        relay.thaw()
        assert (await transport.request(b"GET", b"/version", headers, timeout=10)).status == 200
        assert transport.connections_opened == 2
    finally:
        await transport.aclose()


async def test_http1_fallback_still_works(relayed_kubeconfig: Path) -> None:
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig), http2=False) as kube:
        assert kube.http_version == "HTTP/1.1" and kube.connections_opened is None
        assert (await kube.get(NAMESPACE, "default"))["metadata"]["name"] == "default"


# --- objects kept current by a watch (the Story version of every trigger) ---------------------


async def wait_until(predicate: Any, seconds: float = 10.0) -> None:
    """Wait for a watch to deliver: checks the client's memory (no request) every 20 ms."""
    for _ in range(int(seconds / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true after {seconds}s: {predicate}")


async def test_get_live_reads_once_then_follows_changes_on_the_watch(
    admin_kube: KubeClient, relayed_kubeconfig: Path, relay: TcpProxy
) -> None:
    await seed_story(admin_kube, "followed", version="v1")
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig)) as kube:
        gets = 0
        real_get = kube.get

        async def counting_get(*args: Any, **kw: Any) -> dict[str, Any]:
            nonlocal gets
            gets += 1
            return await real_get(*args, **kw)

        kube.get = counting_get  # type: ignore[method-assign]
        first = await kube.get_live(STORY, "followed")
        assert first["spec"]["version"] == "v1" and gets == 1
        await wait_until(lambda: _live(kube, "followed"))
        for _ in range(20):
            assert (await kube.get_live(STORY, "followed"))["spec"]["version"] == "v1"
        assert gets == 1  # answered from the watched copy

        await admin_kube.merge_patch(STORY, "followed", {"spec": {"version": "v2"}})

        async def sees_v2() -> bool:
            return (await kube.get_live(STORY, "followed"))["spec"]["version"] == "v2"

        await wait_until(sees_v2)
        assert gets == 1
        await admin_kube.delete(STORY, "followed")

        async def sees_deleted() -> bool:
            try:
                await kube.get_live(STORY, "followed")
            except NotFoundError:
                return True
            return False

        await wait_until(sees_deleted)
        assert kube.connections_opened == 1
    assert relay.accepted == 1


async def test_get_live_without_watch_permission_gets_every_time(
    admin_kube: KubeClient, controlplane: Any, k8s_namespace: str, make_identity: Any
) -> None:
    await seed_story(admin_kube, "unwatched", version="v1")
    reader = make_identity(
        [{"apiGroups": ["bubustack.io"], "resources": ["stories"], "verbs": ["get"]}],
        name="story-reader",
    )
    async with await KubeClient.connect(kubeconfig=str(reader.kubeconfig_path)) as kube:
        for _ in range(3):
            assert (await kube.get_live(STORY, "unwatched"))["spec"]["version"] == "v1"
        assert not _live_sync(kube, "unwatched")  # a refused watch never answers for a GET
        await admin_kube.merge_patch(STORY, "unwatched", {"spec": {"version": "v2"}})
        assert (await kube.get_live(STORY, "unwatched"))["spec"]["version"] == "v2"


async def test_story_version_is_read_once_per_client_and_stays_current(
    operator: Any,
    admin_kube: KubeClient,
    relayed_kubeconfig: Path,
    k8s_namespace: str,
) -> None:
    await seed_story(admin_kube, version="v1")
    async with await KubeClient.connect(kubeconfig=str(relayed_kubeconfig)) as kube:
        story_gets = 0
        real_get = kube.get

        async def counting_get(kind: Kind, *args: Any, **kw: Any) -> dict[str, Any]:
            nonlocal story_gets
            story_gets += kind is STORY
            return await real_get(kind, *args, **kw)

        kube.get = counting_get  # type: ignore[method-assign]
        scope = _scope.RunScope(source=MappingSource(trigger_env(k8s_namespace)), kube=kube)
        with _scope.activate(scope):
            first = await start_story("story", {"n": 1})
            await wait_until(lambda: _live(kube, "story"))
            second = await start_story("story", {"n": 2})
            assert story_gets == 1
            await admin_kube.merge_patch(STORY, "story", {"spec": {"version": "v2"}})

            async def sees_v2() -> bool:
                return (await kube.get_live(STORY, "story"))["spec"]["version"] == "v2"

            await wait_until(sees_v2)
            third = await start_story("story", {"n": 3})
    versions = []
    for result in (first, second, third):
        trigger = await admin_kube.get(STORY_TRIGGER, result.trigger)
        versions.append(trigger["spec"]["storyRef"].get("version"))
    assert versions == ["v1", "v1", "v2"]
    assert story_gets == 1
    assert third.decision == "Created"


async def _live(kube: KubeClient, name: str) -> bool:
    return _live_sync(kube, name)


def _live_sync(kube: KubeClient, name: str) -> bool:
    live = kube._live  # the client's LiveObjects (private: tests only)
    return live is not None and live.is_live(STORY, name)


async def test_client_rate_limit_comes_from_the_environment(relayed_kubeconfig: Path) -> None:
    go_like = MappingSource({"BUBU_K8S_QPS": "20", "BUBU_K8S_BURST": "40"})
    async with await KubeClient.connect(
        kubeconfig=str(relayed_kubeconfig), env_source=go_like
    ) as kube:
        assert kube.rate_limit is not None
        assert (kube.rate_limit.qps, kube.rate_limit.burst) == (20.0, 40)
    async with await KubeClient.connect(
        kubeconfig=str(relayed_kubeconfig), env_source=MappingSource({})
    ) as kube:
        assert kube.rate_limit is None  # by default only the API server limits the client
