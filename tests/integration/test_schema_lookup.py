# ruff: noqa: E501
"""Template schema lookups against the real kube-apiserver, under the operator's Roles.

See docs/templates.md#schemas.

The identities are the ServiceAccounts the real operator makes for the StoryRuns and the
Impulse seeded here, bound to the Roles it generates. What the tests establish about RBAC
(docs/deploying.md#impulse-role, docs/deploying.md#engram-runner-role):

* the engram-runner Role has ``get`` on StepRuns but not on Engrams: the lookup is skipped
  with one debug line, and the engram runs unvalidated (the operator's checks stay);
* adding ``get engrams`` through the EngramTemplate's ``execution.rbac`` (which the operator
  merges into the runner Role) is not enough: EngramTemplate is cluster-scoped and no
  namespaced Role can grant it, so the template GET is refused and the lookup is skipped again;
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
from tests._controlplane import rbac, workloads
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
#: the step's inputs (the operator's Story webhook checks them against the inputSchema)
WITH = {"name": "Ada", "count": 1}
GET_ENGRAMS = [{"apiGroups": ["bubustack.io"], "resources": ["engrams"], "verbs": ["get"]}]


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return dict(response.json())


def _template(name: str, rules: list[dict[str, Any]] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": "1.0.0",
        "supportedModes": ["job"],
        "image": workloads.IMAGE,
        "inputSchema": INPUT_SCHEMA,
        "outputSchema": OUTPUT_SCHEMA,
    }
    if rules:
        spec["execution"] = {"rbac": {"rules": rules}}
    return {
        "apiVersion": "catalog.bubustack.io/v1alpha1",
        "kind": "EngramTemplate",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
def catalog(
    controlplane: ControlPlane, operator: Any, k8s_namespace: str
) -> Iterator[dict[str, str]]:
    """Two EngramTemplates with schemas (one whose ``execution.rbac`` adds ``get engrams``), an
    ImpulseTemplate; their Engrams, a Story and StoryRun for each, and Impulse ``hook``, all
    reconciled by the operator (it makes the StepRuns and the identities)."""
    suffix = secrets.token_hex(3)
    names = {
        "engram_template": f"greeter-{suffix}",
        "plain_template": f"plain-{suffix}",
        "impulse_template": f"hook-{suffix}",
    }
    with controlplane.client() as c:
        _ok(
            c.post(
                f"{CATALOG}/engramtemplates", json=_template(names["engram_template"], GET_ENGRAMS)
            )
        )
        _ok(c.post(f"{CATALOG}/engramtemplates", json=_template(names["plain_template"], None)))
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
                        "image": workloads.IMAGE,
                        "configSchema": {
                            "type": "object",
                            "properties": {"path": {"type": "string"}},
                        },
                    },
                },
            )
        )
    impulse = workloads.impulse("hook", story="greeter")
    impulse["spec"]["templateRef"]["name"] = names["impulse_template"]
    objects = [impulse]
    for kind in ("greeter", "plain"):
        objects += [
            workloads.engram(
                kind, template=names[f"{'engram' if kind == 'greeter' else kind}_template"]
            ),
            workloads.story(kind, steps=[{"name": "greet", "ref": {"name": kind}, "with": WITH}]),
            workloads.story_run(f"{kind}-run", story=kind),
        ]
    workloads.seed(controlplane, k8s_namespace, *objects)
    yield names
    with controlplane.client() as c:
        c.delete(f"{CATALOG}/engramtemplates/{names['engram_template']}")
        c.delete(f"{CATALOG}/engramtemplates/{names['plain_template']}")
        c.delete(f"{CATALOG}/impulsetemplates/{names['impulse_template']}")


def _runner(controlplane: ControlPlane, namespace: str, kind: str) -> rbac.Identity:
    """The operator's engram-runner identity for StoryRun ``<kind>-run`` (its StepRun exists)."""
    identity = workloads.engram_runner(controlplane, namespace, f"{kind}-run")
    workloads.step_run(controlplane, namespace, f"{kind}-run-greet", lambda obj: True)
    return identity


def _grant_templates(
    controlplane: ControlPlane, identity: rbac.Identity, *, engrams: bool = False
) -> Iterator[None]:
    name = f"templates-reader-{secrets.token_hex(3)}"
    extra = [{"apiGroups": ["bubustack.io"], "resources": ["engrams"], "verbs": ["get"]}]
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
                        },
                        *(extra if engrams else []),
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
    step_run = identity.service_account.removesuffix("-engram-runner") + "-greet"
    return kube, TemplateSchemas.for_engram(
        kube, namespace=namespace, step_run_name=step_run, timeout=10
    )


async def test_engram_runner_role_skips_with_one_debug_line(
    catalog: dict[str, str],
    controlplane: ControlPlane,
    k8s_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, schemas = await _schemas(_runner(controlplane, k8s_namespace, "plain"), k8s_namespace)
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
    identity = _runner(controlplane, k8s_namespace, "greeter")
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
    identity = _runner(controlplane, k8s_namespace, "greeter")
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
    identity = _runner(controlplane, k8s_namespace, "greeter")
    # The runner's "get engrams" comes from the template's execution.rbac: when the template is
    # deleted the operator regenerates the Role without it (the lookup would then be skipped at
    # the Engram). To see the template itself missing, the grant here covers Engrams too.
    grant = _grant_templates(controlplane, identity, engrams=True)
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
    identity = workloads.impulse_runner(controlplane, k8s_namespace, "hook")
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
