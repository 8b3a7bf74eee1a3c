"""``bubu schema`` output against the real kube-apiserver: each generated schema is the
``openAPIV3Schema`` of a CustomResourceDefinition (which the apiserver accepts only when the
schema is structural), validates and defaults objects there, and rides on an EngramTemplate."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml

from bubu._cli.schema import component_schemas
from tests._controlplane.server import ControlPlane
from tests.examples._load import EXAMPLES, load_example

pytestmark = pytest.mark.integration

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
GROUP = "schemas.bubu.test"


@pytest.fixture
async def api(controlplane: ControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with controlplane.async_client() as client:
        yield client


async def install_crd(api: httpx.AsyncClient, schema: dict[str, Any]) -> str:
    """Create a cluster-scoped CRD whose whole object schema is ``schema``; return its plural."""
    suffix = secrets.token_hex(3)
    plural, kind = f"probes{suffix}", f"Probe{suffix}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {"plural": plural, "singular": plural, "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
    r = await api.post(CRDS, json=crd)
    assert r.status_code == 201, r.text
    for _ in range(200):  # established within a second or two
        got = (await api.get(f"{CRDS}/{plural}.{GROUP}")).json()
        conditions = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        assert "NonStructuralSchema" not in conditions, conditions
        if conditions.get("Established", {}).get("status") == "True":
            return plural
        await asyncio.sleep(0.05)
    raise AssertionError(f"CRD {plural} never became Established: {got.get('status')}")


async def create(api: httpx.AsyncClient, plural: str, body: dict[str, Any]) -> httpx.Response:
    kind = "Probe" + plural.removeprefix("probes")
    obj = {
        "apiVersion": f"{GROUP}/v1",
        "kind": kind,
        "metadata": {"name": f"p-{secrets.token_hex(3)}"},
        **body,
    }
    return await api.post(f"/apis/{GROUP}/v1/{plural}", json=obj)


@pytest.fixture(scope="module")
def json_filter_schemas() -> dict[str, Any]:
    return component_schemas(load_example("json-filter/json_filter.py").JSONFilter)


async def test_json_filter_input_schema_is_structural_validates_and_defaults(
    api: httpx.AsyncClient, json_filter_schemas: dict[str, Any]
) -> None:
    plural = await install_crd(api, json_filter_schemas["inputSchema"])
    inputs = {
        "input": [{"id": "1", "name": "alpha"}, {"id": "2", "name": "beta"}],
        "select": {"matchField": "name", "matchValue": "beta", "valuePath": "id"},
    }
    r = await create(api, plural, inputs)
    assert r.status_code == 201, r.text
    stored = r.json()
    # The free-form value survives (x-kubernetes-preserve-unknown-fields) ...
    assert stored["input"] == inputs["input"]
    # ... and the apiserver applies the defaults declared on the msgspec fields.
    assert stored["select"]["outputKey"] == "value"
    assert stored["select"]["requireMatch"] is True
    assert stored["parseJSONText"] is True
    # A wrong type is refused with the field's path.
    r = await create(api, plural, {"input": {}, "parseJSONText": "yes"})
    assert r.status_code == 422, r.text
    assert "parseJSONText" in r.text
    r = await create(api, plural, {"input": {}, "select": {"includeItem": 3}})
    assert r.status_code == 422, r.text
    assert "select.includeItem" in r.text


async def test_json_filter_config_and_output_schemas_are_structural(
    api: httpx.AsyncClient, json_filter_schemas: dict[str, Any]
) -> None:
    config = await install_crd(api, json_filter_schemas["configSchema"])
    assert (await create(api, config, {})).status_code == 201
    output = await install_crd(api, json_filter_schemas["outputSchema"])
    r = await create(api, output, {"resultSelected": {"id": "2", "item": {"x": [1]}}})
    assert r.status_code == 201, r.text
    assert r.json()["resultSelected"] == {"id": "2", "item": {"x": [1]}}
    r = await create(api, output, {})
    assert r.status_code == 422 and "resultSelected" in r.text, r.text


async def test_engram_template_carries_the_generated_schemas(
    api: httpx.AsyncClient, json_filter_schemas: dict[str, Any]
) -> None:
    name = f"json-filter-{secrets.token_hex(3)}"
    template = {
        "apiVersion": "catalog.bubustack.io/v1alpha1",
        "kind": "EngramTemplate",
        "metadata": {"name": name},
        "spec": {
            "version": "0.1.0",
            "supportedModes": ["job"],
            "image": "ghcr.io/example/json-filter:0.1.0",
            **json_filter_schemas,
        },
    }
    r = await api.post("/apis/catalog.bubustack.io/v1alpha1/engramtemplates", json=template)
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    for key, schema in json_filter_schemas.items():
        assert spec.get(key, {}) == schema, key


async def test_the_raw_msgspec_schema_is_refused(api: httpx.AsyncClient) -> None:
    # The control for the tests above: msgspec's own JSON Schema ($ref, $defs, anyOf with
    # null, a typeless "any") is not structural, and the apiserver says so.
    import msgspec

    inputs = load_example("json-filter/json_filter.py").Inputs
    raw = msgspec.json.schema(inputs)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"raws.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {"plural": "raws", "singular": "raw", "kind": "Raw"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": raw}}
            ],
        },
    }
    r = await api.post(CRDS, json=crd)
    assert r.status_code == 422, r.text


TEMPLATES = sorted(
    p for p in EXAMPLES.glob("*/*.yaml") if p.name in ("Engram.yaml", "Impulse.yaml")
)


@pytest.mark.parametrize(
    "doc",
    [yaml.safe_load(p.read_text()) for p in TEMPLATES],
    ids=[p.parent.name for p in TEMPLATES],
)
async def test_every_example_template_is_accepted_as_written(
    api: httpx.AsyncClient, doc: dict[str, Any]
) -> None:
    # The whole documents `bubu schema --write` produced, against the real template CRDs.
    doc["metadata"]["name"] = f"{doc['metadata']['name']}-{secrets.token_hex(3)}"
    plural = "engramtemplates" if doc["kind"] == "EngramTemplate" else "impulsetemplates"
    r = await api.post(f"/apis/catalog.bubustack.io/v1alpha1/{plural}", json=doc)
    assert r.status_code == 201, r.text
    assert r.json()["spec"] == doc["spec"]


async def test_every_generated_schema_of_the_examples_is_structural(
    api: httpx.AsyncClient,
) -> None:
    from bubu._cli.components import load_component

    modules = sorted(p for p in EXAMPLES.glob("*/*.py") if not p.name.startswith("test_"))
    checked = 0
    for module in modules:
        schemas = component_schemas(load_component(str(module)).cls)
        for key, schema in schemas.items():
            if key != "secretSchema":
                await install_crd(api, schema)
                checked += 1
    assert checked >= 9
