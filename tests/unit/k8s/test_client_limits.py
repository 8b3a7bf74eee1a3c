"""Client-side request rate limit (BUBU_K8S_QPS / BUBU_K8S_BURST) and the shared client's settings.

No sockets: the kr8s Api is a fake and time is a fake clock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bubu._k8s import client as client_module
from bubu._k8s import shared
from bubu._k8s.client import KubeClient, RateLimit
from bubu._k8s.resources import STEP_RUN
from bubu._runtime.env import load_client_settings
from bubu._runtime.sources import MappingSource


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(client_module.time, "monotonic", fake)
    return fake


def test_go_client_limit_allows_a_burst_of_40_then_20_per_second(clock: Clock) -> None:
    limit = RateLimit(20, 40)
    assert [limit.reserve() for _ in range(40)] == [0.0] * 40
    assert limit.reserve() == pytest.approx(0.05)  # the 41st waits one token
    assert limit.reserve() == pytest.approx(0.10)
    clock.now += 1.0  # 20 tokens later, two of them already promised
    assert [limit.reserve() for _ in range(18)] == [0.0] * 18
    assert limit.reserve() > 0


def test_burst_defaults_to_the_rate() -> None:
    assert RateLimit(20).burst == 20 and RateLimit(0.5).burst == 1
    with pytest.raises(ValueError, match="qps must be > 0"):
        RateLimit(0)


class FakeAuth:
    token = None


class FakeApi:
    def __init__(self) -> None:
        self.auth = FakeAuth()
        self._session = None
        self.calls = 0

    @contextlib.asynccontextmanager
    async def call_api(self, method: str, **kw: Any) -> AsyncIterator[httpx.Response]:
        self.calls += 1
        yield httpx.Response(200, json={})


async def test_every_request_takes_a_token(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(client_module.asyncio, "sleep", sleep)
    api = FakeApi()
    kube = KubeClient(api, namespace="ns", rate_limit=RateLimit(10, 2))  # type: ignore[arg-type]
    for _ in range(4):
        await kube.get(STEP_RUN, "s")
    assert api.calls == 4
    assert slept == [pytest.approx(0.1), pytest.approx(0.2)]


def test_client_settings_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    src = MappingSource(
        {
            "BUBU_K8S_QPS": " 20 ",
            "BUBU_K8S_BURST": "40",
            "BUBU_K8S_TIMEOUT": "5s",
            "BUBU_K8S_USER_AGENT": "ua/2",
            "KUBECONFIG": "/k",
            "BUBU_IMPULSE_NAMESPACE": "team-a",
        }
    )
    s = load_client_settings(src)
    assert (s.qps, s.burst, s.timeout, s.user_agent, s.kubeconfig, s.namespace) == (
        20.0,
        40,
        5.0,
        "ua/2",
        "/k",
        "team-a",
    )
    assert load_client_settings(MappingSource({})).qps == 0.0
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        bad = load_client_settings(MappingSource({"BUBU_K8S_QPS": "-3", "BUBU_K8S_BURST": "x"}))
    assert (bad.qps, bad.burst) == (0.0, 0)
    assert "BUBU_K8S_QPS" in caplog.text and "BUBU_K8S_BURST" in caplog.text


async def test_shared_client_takes_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    class Made:
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    async def connect(**kw: Any) -> Any:
        seen.update(kw)
        return Made()

    monkeypatch.setattr(KubeClient, "connect", connect)
    src = MappingSource(
        {
            "BUBU_K8S_QPS": "20",
            "BUBU_K8S_BURST": "40",
            "KUBECONFIG": "/cfg",
            "BUBU_POD_NAMESPACE": "p",
        }
    )
    made = await shared.shared_client(src)
    assert await shared.shared_client(src) is made
    limit = seen["rate_limit"]
    assert (limit.qps, limit.burst) == (20.0, 40)
    assert (seen["kubeconfig_fallback"], seen["namespace"]) == ("/cfg", "p")
    await shared.aclose_shared_client()
    assert made.closed


def test_runtime_env_carries_the_client_rate_limit() -> None:
    from bubu._runtime.env import load_env, load_identity

    src = MappingSource({"BUBU_K8S_QPS": "20", "BUBU_K8S_BURST": "40"})
    for loaded in (load_env(src), load_identity(src)):
        assert (loaded.k8s_qps, loaded.k8s_burst) == (20.0, 40)
    assert (load_env(MappingSource({})).k8s_qps, load_env(MappingSource({})).k8s_burst) == (0.0, 0)


async def test_batch_and_impulse_clients_use_the_run_env_not_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lifecycles pass the loaded env's limit; a BUBU_K8S_QPS in os.environ that the run's
    # source does not carry must not leak in (only _runtime reads BUBU_* variables).
    from bubu import _batch, _impulse
    from bubu._runtime.env import load_env

    monkeypatch.setenv("BUBU_K8S_QPS", "1")
    seen: list[dict[str, Any]] = []

    async def connect(**kw: Any) -> Any:
        seen.append(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(KubeClient, "connect", connect)
    env = load_env(MappingSource({"BUBU_K8S_QPS": "7", "BUBU_STEPRUN_NAME": "s"}))
    with pytest.raises(RuntimeError, match="stop here"):
        await _impulse._connect(env)
    with pytest.raises(RuntimeError, match="stop here"):
        await _batch._open_sink(env, None, None)
    assert [(kw["qps"], kw["burst"]) for kw in seen] == [(7.0, 0), (7.0, 0)]
