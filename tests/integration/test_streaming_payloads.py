"""Streaming config hydration (Go ``loadStreamingExecutionContext``) on loopback gRPC and the
real kube-apiserver: references and templates in the config are resolved before ``init``;
packets pass through as they were sent, refs included (Go hydrates nothing per packet)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

import tests.conftest as _root_conftest
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.sources import MappingSource
from bubu._storage import shared
from bubu._streaming import start_streaming
from bubu.engram import StreamingEngram
from bubu.errors import StorageAccessError, StorageNotFoundError
from bubu.testkit import LocalStorage
from tests._controlplane import rbac
from tests._controlplane.server import ControlPlane
from tests.integration._stream_helpers import connector, running

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        k8s_namespace,
        make_identity,
    )

pytestmark = pytest.mark.loopback


class Config(msgspec.Struct):
    prompt: str = ""
    endpoint: str = ""
    token: str = ""


class Announce(StreamingEngram[Config]):
    """Publishes its config, then echoes each packet's payload unchanged."""

    async def init(self, config: Config, secrets: Any) -> None:
        self.config = config

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        yield StreamMessage.json(msgspec.to_builtins(self.config))
        async for msg in inbound:
            yield StreamMessage(kind="data", payload=msg.payload)
            msg.done()


@pytest.fixture(autouse=True)
def _fresh_managers() -> Any:
    shared.reset()
    yield
    shared.reset()


async def test_config_refs_and_templates_resolve_and_packets_pass_through(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    prompt = await storage.put("You are {{ a helpful }} assistant. " * 40, name="prompt")
    config = {"prompt": prompt, "endpoint": "wss://{{ .inputs.host }}/v1"}
    env = {
        **storage.env(),
        "BUBU_STEP_CONFIG": msgspec.json.encode(config).decode(),
        "BUBU_TEMPLATE_CONTEXT": '{"inputs": {"host": "llm.example"}}',
    }
    engram = Announce()
    async with connector() as conn, running(engram, conn, extra_env=env):
        await conn.wait_ready()
        first = await conn.next_output()
        assert first.json_data() == {
            "prompt": "You are {{ a helpful }} assistant. " * 40,
            "endpoint": "wss://llm.example/v1",
            "token": "",
        }
        packet = {"doc": {"$bubuStorageRef": "outputs/testkit/prompt.json"}, "q": "{{ x }}"}
        await conn.send(StreamMessage.json(packet))
        echoed = await conn.next_output()
        assert echoed.json_data() == packet


async def test_a_missing_object_in_the_config_fails_before_dialing(tmp_path: Path) -> None:
    env = {
        **LocalStorage(tmp_path).env(),
        "BUBU_STEP_CONFIG": '{"prompt": {"$bubuStorageRef": "outputs/ns/gone/output.json"}}',
    }
    async with connector() as conn:
        source = MappingSource({**conn.binding_env(), **env})
        with pytest.raises(StorageNotFoundError) as info:
            await start_streaming(Announce(), source=source)
        assert str(info.value).startswith(
            "failed to hydrate config: failed to read offloaded data from "
            "'outputs/ns/gone/output.json'"
        )
        assert conn.data_headers == []  # never dialled


def _seed_secret(cp: ControlPlane, ns: str) -> None:
    with cp.client() as c:
        r = c.post(
            f"/api/v1/namespaces/{ns}/secrets",
            json={
                "metadata": {"name": "llm"},
                "data": {"token": base64.b64encode(b"tok-7a6b5c4d").decode()},
            },
        )
        assert r.status_code < 300, r.text


@pytest.mark.integration
async def test_a_secret_ref_in_the_config_is_read_with_a_client_of_its_own(
    controlplane: ControlPlane,
    k8s_namespace: str,
    make_identity: Callable[..., rbac.Identity],
    engram_runner_identity: rbac.Identity,
) -> None:
    # A streaming pod keeps no Kubernetes client; one is connected just to read the ref.
    _seed_secret(controlplane, k8s_namespace)
    # A ServiceAccount of the test's own with just that rule (what the Story's execution.rbac
    # would add to the operator's Role).
    granted = make_identity([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    base = {
        "BUBU_POD_NAMESPACE": k8s_namespace,
        "BUBU_STEP_CONFIG": '{"token": {"$bubuSecretRef": "llm:token"}}',
    }
    engram = Announce()
    env = {**base, "KUBECONFIG": str(granted.kubeconfig_path)}
    async with connector() as conn, running(engram, conn, extra_env=env):
        await conn.wait_ready()
        assert (await conn.next_output()).json_data()["token"] == "tok-7a6b5c4d"
    # Under the operator's runner Role the read is refused, and the message says which verb.
    env = {**base, "KUBECONFIG": str(engram_runner_identity.kubeconfig_path)}
    async with connector() as conn:
        source = MappingSource({**conn.binding_env(), **env})
        with pytest.raises(StorageAccessError, match='Role needs "get" on secrets'):
            await start_streaming(Announce(), source=source)
