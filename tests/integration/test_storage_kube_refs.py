"""``$bubuConfigMapRef`` / ``$bubuSecretRef`` against the real kube-apiserver.

Under the engram-runner Role the real operator creates (docs/deploying.md#engram-runner-role) the
reads are refused: the Role has no ``get`` on ``configmaps`` or ``secrets``, so a step whose inputs
use such refs needs an extra Role rule. The test says so by asserting the typed error, then declares
exactly ``get configmaps, secrets`` in the EngramTemplate's ``execution.rbac`` (the operator merges
it into the runner Role it generates) and resolves every accepted form under that Role.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bubu._k8s.client import KubeClient
from bubu._storage.manager import StorageManager
from bubu.errors import StorageAccessError, StorageNotFoundError, StorageRefError
from tests._controlplane import rbac, workloads
from tests._controlplane.server import ControlPlane

pytestmark = pytest.mark.integration

#: what the SDK needs for kube refs, and the runner Role lacks
KUBE_REF_RULES = [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"]}]


def _seed(cp: ControlPlane, ns: str) -> None:
    with cp.client() as c:
        r = c.post(
            f"/api/v1/namespaces/{ns}/configmaps",
            json={
                "metadata": {"name": "app-config"},
                "data": {"settings": '{"retries": 3, "mode": "fast"}', "banner": "hello world"},
            },
        )
        assert r.status_code < 300, r.text
        r = c.post(
            f"/api/v1/namespaces/{ns}/secrets",
            json={
                "metadata": {"name": "api-creds"},
                "data": {"token": base64.b64encode(b"tok-123456").decode()},
            },
        )
        assert r.status_code < 300, r.text


INPUTS: dict[str, Any] = {
    "settings": {"$bubuConfigMapRef": "app-config:settings"},
    "banner": {"$bubuConfigMapRef": {"name": "app-config", "key": "banner", "format": "raw"}},
    "token": {"$bubuSecretRef": "{ns}/api-creds:token"},
    "plain": {"keep": [1, 2]},
}


def _inputs(ns: str) -> dict[str, Any]:
    out = dict(INPUTS)
    out["token"] = {"$bubuSecretRef": f"{ns}/api-creds:token"}
    return out


async def test_the_runner_role_cannot_read_refs(
    controlplane: ControlPlane, k8s_namespace: str, engram_runner_identity: rbac.Identity
) -> None:
    _seed(controlplane, k8s_namespace)
    async with await KubeClient.connect(
        kubeconfig=str(engram_runner_identity.kubeconfig_path), namespace=k8s_namespace
    ) as kube:
        m = StorageManager(None, workload_namespace=k8s_namespace, kube=kube)
        with pytest.raises(StorageAccessError, match='Role needs "get" on configmaps'):
            await m.hydrate({"settings": {"$bubuConfigMapRef": "app-config:settings"}})
        with pytest.raises(StorageAccessError, match='Role needs "get" on secrets'):
            await m.hydrate({"t": {"$bubuSecretRef": "api-creds:token"}})


async def test_refs_resolve_with_get_on_configmaps_and_secrets(
    controlplane: ControlPlane, operator: Any, k8s_namespace: str
) -> None:
    _seed(controlplane, k8s_namespace)
    template = f"kube-refs-{k8s_namespace}"[:63]
    workloads.seed(
        controlplane,
        k8s_namespace,
        workloads.engram_template(template, rbac_rules=KUBE_REF_RULES),
        workloads.engram("reader", template=template),
        workloads.story("refs", steps=[{"name": "read", "ref": {"name": "reader"}}]),
        workloads.story_run("refs-run", story="refs"),
    )
    identity = workloads.engram_runner(controlplane, k8s_namespace, "refs-run")
    assert KUBE_REF_RULES[0] in identity.rules, identity.rules
    async with await KubeClient.connect(
        kubeconfig=str(identity.kubeconfig_path), namespace=k8s_namespace
    ) as kube:
        m = StorageManager(None, workload_namespace=k8s_namespace, kube=kube)
        assert await m.hydrate(_inputs(k8s_namespace)) == {
            "settings": {"retries": 3, "mode": "fast"},
            "banner": "hello world",
            "token": "tok-123456",
            "plain": {"keep": [1, 2]},
        }
        with pytest.raises(
            StorageNotFoundError, match='ConfigMap .*/app-config missing key "nope"'
        ):
            await m.hydrate({"x": {"$bubuConfigMapRef": "app-config:nope"}})
        with pytest.raises(
            StorageNotFoundError, match="failed to read Secret .*/absent: not found"
        ):
            await m.hydrate({"x": {"$bubuSecretRef": "absent:k"}})
        with pytest.raises(StorageRefError, match="cross-namespace references are not allowed"):
            await m.hydrate({"x": {"$bubuSecretRef": "kube-system/api-creds:token"}})
