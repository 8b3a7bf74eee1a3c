# ruff: noqa: E501
"""Template schema lookups against the real kube-apiserver, under the operator's Roles (c.11).

What the tests establish about RBAC (crds.md 7.2, 7.3):

* the engram-runner Role has ``get`` on StepRuns but not on Engrams: the lookup is skipped
  with one debug line, and the engram runs unvalidated (the operator's checks stay);
* adding ``get engrams`` through ``execution.rbac`` is not enough: EngramTemplate is
  cluster-scoped and no namespaced Role can grant it, so the template GET is refused and the
  lookup is skipped again;
* with a ClusterRole granting ``get`` on ``engramtemplates`` as well, inputs and outputs are
  validated, terminal on failure; a template that does not exist is a retryable lookup error.
* the Impulse Role has ``get`` on Impulses; ImpulseTemplate needs the same ClusterRole grant.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bubu._k8s.client import KubeClient
from bubu._schema import TemplateSchemas
from bubu.errors import SchemaLookupError, SchemaValidationError
from tests._controlplane import rbac
from tests._controlplane.server import ControlPlane

pytestmark = pytest.mark.integration

CATALOG = "/apis/catalog.bubustack.io/v1alpha1"
CORE = "/apis/bubustack.io/v1alpha1"
RUNS = "/apis/runs.bubustack.io/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "required": True}, "count": {"type": "integer"}},
}
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["greeting"],
    "properties": {"greeting": {"type": "string"}},
}
GET_ENGRAMS = [{"apiGroups": ["bubustack.io"], "resources": ["engrams"], "verbs": ["get"]}]


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return dict(response.json())


@pytest.fixture
def catalog(controlplane: ControlPlane, k8s_namespace: str) -> Iterator[dict[str, str]]:
    """An EngramTemplate, an ImpulseTemplate, an Engram, an Impulse and a StepRun (as admin)."""
    suffix = secrets.token_hex(3)
    names = {"engram_template": f"greeter-{suffix}", "impulse_template": f"hook-{suffix}"}
    with controlplane.client() as c:
        _ok(
            c.post(
                f"{CATALOG}/engramtemplates",
                json={
                    "apiVersion": "catalog.bubustack.io/v1alpha1",
                    "kind": "EngramTemplate",
                    "metadata": {"name": names["engram_template"]},
                    "spec": {
                        "version": "1.0.0",
                        "supportedModes": ["job"],
                        "inputSchema": INPUT_SCHEMA,
                        "outputSchema": OUTPUT_SCHEMA,
                    },
                },
            )
        )
        _ok(
            c.post(
                f"{CATALOG}/impulsetemplates",
                json={
                    "apiVersion": "catalog.bubustack.io/v1alpha1",
                    "kind": "ImpulseTemplate",
                    "metadata": {"name": names["impulse_template"]},
                    "spec": {
                        "version": "1.0.0",
                        "supportedModes": ["deployment"],
                        "configSchema": {
                            "type": "object",
                            "properties": {"path": {"type": "string"}},
                        },
                    },
                },
            )
        )
        _ok(
            c.post(
                f"{CORE}/namespaces/{k8s_namespace}/engrams",
                json={
                    "apiVersion": "bubustack.io/v1alpha1",
                    "kind": "Engram",
                    "metadata": {"name": "greeter"},
                    "spec": {"templateRef": {"name": names["engram_template"]}},
                },
            )
        )
        _ok(
            c.post(
                f"{CORE}/namespaces/{k8s_namespace}/impulses",
                json={
                    "apiVersion": "bubustack.io/v1alpha1",
                    "kind": "Impulse",
                    "metadata": {"name": "hook"},
                    "spec": {
                        "templateRef": {"name": names["impulse_template"]},
                        "storyRef": {"name": "story"},
                    },
                },
            )
        )
        _ok(
            c.post(
                f"{RUNS}/namespaces/{k8s_namespace}/stepruns",
                json={
                    "apiVersion": "runs.bubustack.io/v1alpha1",
                    "kind": "StepRun",
                    "metadata": {"name": "step-1"},
                    "spec": {
                        "stepId": "greet",
                        "storyRunRef": {"name": "run-1"},
                        "engramRef": {"name": "greeter"},
                    },
                },
            )
        )
    yield names
    with controlplane.client() as c:
        c.delete(f"{CATALOG}/engramtemplates/{names['engram_template']}")
        c.delete(f"{CATALOG}/impulsetemplates/{names['impulse_template']}")


def _grant_templates(controlplane: ControlPlane, identity: rbac.Identity) -> Iterator[None]:
    name = f"templates-reader-{secrets.token_hex(3)}"
    with controlplane.client() as c:
        _ok(
            c.post(
                f"{RBAC}/clusterroles",
                json={
                    "metadata": {"name": name},
                    "rules": [
                        {
                            "apiGroups": ["catalog.bubustack.io"],
                            "resources": ["engramtemplates", "impulsetemplates"],
                            "verbs": ["get"],
                        }
                    ],
                },
            )
        )
        _ok(
            c.post(
                f"{RBAC}/clusterrolebindings",
                json={
                    "metadata": {"name": name},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": name,
                    },
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "name": identity.service_account,
                            "namespace": identity.namespace,
                        }
                    ],
                },
            )
        )
    yield
    with controlplane.client() as c:
        c.delete(f"{RBAC}/clusterrolebindings/{name}")
        c.delete(f"{RBAC}/clusterroles/{name}")


async def _schemas(identity: rbac.Identity, namespace: str) -> tuple[KubeClient, TemplateSchemas]:
    kube = await KubeClient.connect(kubeconfig=str(identity.kubeconfig_path))
    return kube, TemplateSchemas.for_engram(
        kube, namespace=namespace, step_run_name="step-1", timeout=10
    )


async def test_engram_runner_role_skips_with_one_debug_line(
    catalog: dict[str, str],
    engram_runner_identity: rbac.Identity,
    k8s_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, schemas = await _schemas(engram_runner_identity, k8s_namespace)
    async with kube:
        with caplog.at_level(logging.DEBUG, logger="bubu.schema"):
            await schemas.validate_inputs({"count": "not a number"})  # would fail if validated
            await schemas.validate_output(None)
    lines = [r for r in caplog.records if r.name == "bubu.schema"]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert lines[0].getMessage().startswith("Schema validation skipped: Engram lookup forbidden")


async def test_a_role_cannot_grant_the_cluster_scoped_template(
    catalog: dict[str, str],
    controlplane: ControlPlane,
    k8s_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    identity = rbac.engram_runner_identity(controlplane, k8s_namespace, extra_rules=GET_ENGRAMS)
    kube, schemas = await _schemas(identity, k8s_namespace)
    async with kube:
        with caplog.at_level(logging.DEBUG, logger="bubu.schema"):
            await schemas.validate_inputs({})
    messages = [r.getMessage() for r in caplog.records if r.name == "bubu.schema"]
    assert messages == [
        "Schema validation skipped: EngramTemplate lookup forbidden; controller-side "
        "validation remains authoritative"
    ]


async def test_with_a_cluster_role_inputs_and_outputs_are_validated(
    catalog: dict[str, str], controlplane: ControlPlane, k8s_namespace: str
) -> None:
    identity = rbac.engram_runner_identity(controlplane, k8s_namespace, extra_rules=GET_ENGRAMS)
    grant = _grant_templates(controlplane, identity)
    next(grant)
    try:
        kube, schemas = await _schemas(identity, k8s_namespace)
        async with kube:
            await schemas.validate_inputs({"name": "Ada", "count": 2})
            with pytest.raises(SchemaValidationError) as err:
                await schemas.validate_inputs({"count": 2.5})
            assert str(err.value) == (
                "input schema validation failed: object is invalid against EngramTemplate "
                f"{catalog['engram_template']} inputs schema: "
                "[$.name: missing required property; $.count: expected integer]"
            )
            assert err.value.error_type == "validation_error" and not err.value.retryable
            await schemas.validate_output({"greeting": "hi"})
            with pytest.raises(
                SchemaValidationError, match="output is empty but a schema is defined"
            ):
                await schemas.validate_output(None)
    finally:
        next(grant, None)


async def test_a_missing_template_is_a_retryable_lookup_error(
    catalog: dict[str, str], controlplane: ControlPlane, k8s_namespace: str
) -> None:
    identity = rbac.engram_runner_identity(controlplane, k8s_namespace, extra_rules=GET_ENGRAMS)
    grant = _grant_templates(controlplane, identity)
    next(grant)
    try:
        with controlplane.client() as c:
            _ok(c.delete(f"{CATALOG}/engramtemplates/{catalog['engram_template']}"))
        kube, schemas = await _schemas(identity, k8s_namespace)
        async with kube:
            with pytest.raises(SchemaLookupError) as err:
                await schemas.validate_inputs({"name": "x"})
        assert str(err.value).startswith("input schema resolution failed: fetch engram template: ")
        assert err.value.retryable and err.value.exit_class == "retry"
    finally:
        next(grant, None)


async def test_impulse_template_config_schema(
    catalog: dict[str, str], controlplane: ControlPlane, k8s_namespace: str
) -> None:
    identity = rbac.impulse_identity(controlplane, k8s_namespace, impulse="hook")
    kube = await KubeClient.connect(kubeconfig=str(identity.kubeconfig_path))
    async with kube:
        skipped = TemplateSchemas.for_impulse(kube, namespace=k8s_namespace, impulse_name="hook")
        await skipped.validate_config({"path": 1})  # ImpulseTemplate GET is forbidden: skipped
        assert skipped.template is None
    grant = _grant_templates(controlplane, identity)
    next(grant)
    try:
        kube = await KubeClient.connect(kubeconfig=str(identity.kubeconfig_path))
        async with kube:
            schemas = TemplateSchemas.for_impulse(
                kube, namespace=k8s_namespace, impulse_name="hook"
            )
            await schemas.validate_config({"path": "/hook"})
            with pytest.raises(
                SchemaValidationError, match=r"config schema: \[\$.path: expected string\]"
            ):
                await schemas.validate_config({"path": 1})
    finally:
        next(grant, None)
