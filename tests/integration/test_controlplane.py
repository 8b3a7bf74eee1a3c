"""Smoke tests for the real control plane (kube-apiserver + etcd + BubuStack CRDs).

They pin what the SDK's Kubernetes tests rely on: every custom kind can be
created, status is a subresource guarded by the CRD schema and CEL rules,
watches deliver changes, the Roles the real operator generates deny what they
should, and the fault proxy injects errors and then gets out of the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bubu._k8s import identity
from tests._controlplane import rbac
from tests._controlplane.faults import FaultProxy
from tests._controlplane.server import ControlPlane

pytestmark = pytest.mark.integration

RUNS = "/apis/runs.bubustack.io/v1alpha1"
CORE = "/apis/bubustack.io/v1alpha1"
MERGE = {"Content-Type": "application/merge-patch+json"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ns_path(api: str, ns: str, plural: str, name: str = "", sub: str = "") -> str:
    p = f"{api}/namespaces/{ns}/{plural}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code < 300, (
        f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:500]}"
    )
    body: dict[str, Any] = r.json()
    return body


def sample_objects(ns: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(api prefix, plural, body) for one object of each namespaced BubuStack kind."""
    return [
        (
            CORE,
            "stories",
            {
                "kind": "Story",
                "metadata": {"name": "story-a"},
                "spec": {"steps": [{"name": "start", "type": "condition"}]},
            },
        ),
        (
            CORE,
            "impulses",
            {
                "kind": "Impulse",
                "metadata": {"name": "impulse-a"},
                "spec": {"templateRef": {"name": "any"}, "storyRef": {"name": "story-a"}},
            },
        ),
        (
            CORE,
            "engrams",
            {
                "kind": "Engram",
                "metadata": {"name": "engram-a"},
                "spec": {"templateRef": {"name": "any"}},
            },
        ),
        (
            RUNS,
            "storytriggers",
            {
                "kind": "StoryTrigger",
                "metadata": {"name": "trigger-a"},
                "spec": {
                    "storyRef": {"name": "story-a"},
                    "inputs": {"x": 1},
                    "deliveryIdentity": {"mode": "none", "submissionId": "sub-1"},
                },
            },
        ),
        (
            RUNS,
            "storyruns",
            {
                "kind": "StoryRun",
                "metadata": {"name": "run-a"},
                "spec": {"storyRef": {"name": "story-a"}, "inputs": {"x": 1}},
            },
        ),
        (
            RUNS,
            "stepruns",
            {
                "kind": "StepRun",
                "metadata": {"name": "run-a-start"},
                "spec": {"storyRunRef": {"name": "run-a"}, "stepId": "start"},
            },
        ),
        (
            RUNS,
            "effectclaims",
            {
                "kind": "EffectClaim",
                "metadata": {"name": "claim-a"},
                "spec": {
                    "stepRunRef": {"name": "run-a-start"},
                    "effectKey": "send-email",
                    "holderIdentity": "pod-1",
                    "leaseDurationSeconds": 30,
                    "acquireTime": micro_now(),
                    "renewTime": micro_now(),
                },
            },
        ),
    ]


def create(c: httpx.Client, ns: str, api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": api.removeprefix("/apis/"), **body}
    return ok(c.post(ns_path(api, ns, plural), json=body))


def make_steprun(
    c: httpx.Client, ns: str, name: str = "run-a-start", *, running: bool = True
) -> dict[str, Any]:
    obj = create(
        c,
        ns,
        RUNS,
        "stepruns",
        {
            "kind": "StepRun",
            "metadata": {"name": name},
            "spec": {"storyRunRef": {"name": "run-a"}, "stepId": "start"},
        },
    )
    if running:
        obj = ok(
            c.patch(
                ns_path(RUNS, ns, "stepruns", name, "status"),
                headers=MERGE,
                json={"status": {"retries": 0, "phase": "Running", "startedAt": now()}},
            )
        )
    return obj


# --------------------------------------------------------------------------- the server itself


def test_server_version_and_all_crds_established(controlplane: ControlPlane) -> None:
    with controlplane.client() as c:
        version = ok(c.get("/version"))
        major, minor = int(version["major"]), int(version["minor"].rstrip("+"))
        assert (major, minor) >= (1, 32), version
        crds = ok(c.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"))["items"]
    names = {crd["metadata"]["name"] for crd in crds}
    assert set(controlplane.crds) <= names
    assert len(controlplane.crds) == 12
    for crd in crds:
        conds = {cond["type"]: cond["status"] for cond in crd["status"]["conditions"]}
        assert conds["Established"] == "True" and conds["NamesAccepted"] == "True", crd["metadata"][
            "name"
        ]


def test_create_every_kind_and_status_is_a_subresource(
    controlplane: ControlPlane, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    with controlplane.client() as c:
        for api, plural, sample in sample_objects(ns):
            body = {**sample, "status": {"phase": "Running"}}
            created = create(c, ns, api, plural, body)
            assert created["metadata"]["namespace"] == ns
            assert "status" not in created or created["status"] != {"phase": "Running"}, plural
            got = ok(c.get(ns_path(api, ns, plural, body["metadata"]["name"])))
            assert got["metadata"]["uid"] == created["metadata"]["uid"]
        # cluster-scoped kinds too
        tpl = ok(
            c.post(
                "/apis/catalog.bubustack.io/v1alpha1/engramtemplates",
                json={
                    "apiVersion": "catalog.bubustack.io/v1alpha1",
                    "kind": "EngramTemplate",
                    "metadata": {"name": f"tpl-{ns}"},
                    "spec": {"version": "1.0.0", "supportedModes": ["job"]},
                },
            )
        )
        assert tpl["metadata"]["name"] == f"tpl-{ns}"
        c.delete(f"/apis/catalog.bubustack.io/v1alpha1/engramtemplates/tpl-{ns}")


def test_status_patches_for_each_runs_kind(controlplane: ControlPlane, k8s_namespace: str) -> None:
    ns = k8s_namespace
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Ok",
        "message": "",
        "lastTransitionTime": now(),
    }
    with controlplane.client() as c:
        for api, plural, body in sample_objects(ns):
            create(c, ns, api, plural, body)
        patches: dict[str, dict[str, Any]] = {
            "stepruns": {
                "retries": 0,
                "phase": "Running",
                "startedAt": now(),
                "signals": {"progress": {"pct": 5}},
            },
            "storyruns": {"phase": "Running", "startedAt": now(), "conditions": [ready]},
            "storytriggers": {
                "decision": "Created",
                "reason": "StoryRunCreated",
                "acceptedAt": now(),
                "storyRunRef": {"name": "run-a"},
            },
            "effectclaims": {"phase": "Reserved", "observedGeneration": 1},
            "impulses": {"triggersReceived": 3, "storiesLaunched": 2, "lastTrigger": now()},
        }
        for api, plural, body in sample_objects(ns):
            if plural not in patches:
                continue
            got = ok(
                c.patch(
                    ns_path(api, ns, plural, body["metadata"]["name"], "status"),
                    headers=MERGE,
                    json={"status": patches[plural]},
                )
            )
            for k, v in patches[plural].items():
                if k != "conditions":
                    assert got["status"][k] == v, (plural, k)


async def test_watch_sees_status_change(controlplane: ControlPlane, k8s_namespace: str) -> None:
    ns = k8s_namespace
    with controlplane.client() as c:
        obj = make_steprun(c, ns, running=False)
    rv = obj["metadata"]["resourceVersion"]
    events: list[dict[str, Any]] = []

    async def watch() -> None:
        async with controlplane.async_client(timeout=10) as ac:
            params = {
                "watch": "1",
                "fieldSelector": "metadata.name=run-a-start",
                "resourceVersion": rv,
                "timeoutSeconds": "10",
            }
            async with ac.stream("GET", ns_path(RUNS, ns, "stepruns"), params=params) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line:
                        events.append(json.loads(line))
                        if events[-1]["object"].get("status", {}).get("phase") == "Succeeded":
                            return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    async with controlplane.async_client() as ac:
        for phase in ("Running", "Succeeded"):
            r = await ac.patch(
                ns_path(RUNS, ns, "stepruns", "run-a-start", "status"),
                headers=MERGE,
                json={"status": {"retries": 0, "phase": phase}},
            )
            ok(r)
    await asyncio.wait_for(task, 10)
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED"]
    assert [e["object"]["status"]["phase"] for e in events] == ["Running", "Succeeded"]


# --------------------------------------------------------------------------- schema + CEL


def test_steprun_status_without_required_retries_is_rejected(
    controlplane: ControlPlane, k8s_namespace: str
) -> None:
    with controlplane.client() as c:
        make_steprun(c, k8s_namespace, running=False)
        r = c.patch(
            ns_path(RUNS, k8s_namespace, "stepruns", "run-a-start", "status"),
            headers=MERGE,
            json={"status": {"phase": "Running"}},
        )
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "Invalid"
    assert "status.retries: Required value" in r.json()["message"]


def test_cel_rules_reject_bad_status_and_spec(
    controlplane: ControlPlane, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    with controlplane.client() as c:
        create(
            c,
            ns,
            RUNS,
            "storyruns",
            {
                "kind": "StoryRun",
                "metadata": {"name": "run-a"},
                "spec": {"storyRef": {"name": "story-a"}},
            },
        )
        path = ns_path(RUNS, ns, "storyruns", "run-a", "status")
        # CEL: a non-empty conditions list must contain Ready
        progressing = {
            "type": "Progressing",
            "status": "True",
            "reason": "Running",
            "message": "",
            "lastTransitionTime": now(),
        }
        r = c.patch(
            path, headers=MERGE, json={"status": {"phase": "Running", "conditions": [progressing]}}
        )
        assert r.status_code == 422, r.text
        assert "status.conditions must include Ready when conditions are set" in r.json()["message"]
        # CEL: reason <= 64 characters
        long_reason = {**progressing, "type": "Ready", "reason": "R" * 65}
        r = c.patch(path, headers=MERGE, json={"status": {"conditions": [long_reason]}})
        assert r.status_code == 422, r.text
        assert "status.conditions reason field must be <= 64 characters" in r.json()["message"]
        # CEL on Story spec: each step has exactly one of ref/type
        r = c.post(
            ns_path(CORE, ns, "stories"),
            json={
                "apiVersion": "bubustack.io/v1alpha1",
                "kind": "Story",
                "metadata": {"name": "bad-story"},
                "spec": {"steps": [{"name": "start"}]},
            },
        )
        assert r.status_code == 422, r.text
        assert "each step must set exactly one of ref or type" in r.json()["message"]
        # the valid variant is accepted
        ok(
            c.patch(
                path,
                headers=MERGE,
                json={"status": {"conditions": [{**progressing, "type": "Ready"}]}},
            )
        )


# --------------------------------------------------------------------------- least privilege


def _owner_kinds(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(o["kind"], o["name"]) for o in obj["metadata"].get("ownerReferences") or []}


def test_engram_runner_identity_has_exactly_the_operators_runner_role(
    controlplane: ControlPlane, k8s_namespace: str, engram_runner_identity: rbac.Identity
) -> None:
    # Everything here is the operator's output for StoryRun run-1: the ServiceAccount, the
    # Role it generated and the binding (no copy of the rules in this repository).
    ns = k8s_namespace
    me = engram_runner_identity
    sr = "run-1-step-a"
    assert me.username == f"system:serviceaccount:{ns}:run-1-engram-runner"
    with controlplane.client() as admin:
        rbac_api = "/apis/rbac.authorization.k8s.io/v1"
        role = ok(admin.get(f"{rbac_api}/namespaces/{ns}/roles/{me.role}"))
        binding = ok(admin.get(f"{rbac_api}/namespaces/{ns}/rolebindings/{me.role}"))
        assert ("StoryRun", "run-1") in _owner_kinds(role)
        assert binding["roleRef"]["name"] == me.role
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": me.service_account, "namespace": ns}
        ]
        step_uid = ok(admin.get(ns_path(RUNS, ns, "stepruns", sr)))["metadata"]["uid"]
    verbs = {
        (r.get("apiGroups", [""])[0], res, verb)
        for r in role["rules"]
        for res in r["resources"]
        for verb in r["verbs"]
    }
    assert ("runs.bubustack.io", "stepruns", "list") not in verbs
    with controlplane.client(token=me.token) as c:
        review = ok(
            c.post(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
        )
        assert review["status"]["userInfo"]["username"] == me.username
        # allowed
        ok(c.get(ns_path(RUNS, ns, "stepruns", sr)))
        ok(
            c.patch(
                ns_path(RUNS, ns, "stepruns", sr, "status"),
                headers=MERGE,
                json={"status": {"signals": {"s": {"v": 1}}}},
            )
        )
        name = identity.derive_effect_claim_name(ns, sr, "k")
        claim = {
            "apiVersion": "runs.bubustack.io/v1alpha1",
            "kind": "EffectClaim",
            "metadata": {"name": name},
            "spec": {"stepRunRef": {"name": sr, "uid": step_uid}, "effectKey": "k"},
        }
        ok(c.post(ns_path(RUNS, ns, "effectclaims"), json=claim))
        # The operator's EffectClaim controller writes the claim's status right after the
        # create, so a PUT from an older read gets 409: read again and retry, as the SDK does.
        for _ in range(10):
            current = ok(c.get(ns_path(RUNS, ns, "effectclaims", name)))
            current["spec"]["holderIdentity"] = "pod-1"
            current["spec"]["acquireTime"] = micro_now()
            r = c.put(ns_path(RUNS, ns, "effectclaims", name), json=current)
            if r.status_code != 409:
                break
        ok(r)
        with c.stream(
            "GET",
            ns_path(RUNS, ns, "stepruns"),
            params={
                "watch": "1",
                "fieldSelector": f"metadata.name={sr}",
                "timeoutSeconds": "1",
            },
        ) as w:
            assert w.status_code == 200
        # denied: verbs and resources outside the Role
        denied = [
            c.get(ns_path(RUNS, ns, "stepruns")),  # list
            c.delete(ns_path(RUNS, ns, "stepruns", sr)),  # delete
            c.patch(
                ns_path(RUNS, ns, "stepruns", sr),
                headers=MERGE,  # spec patch
                json={"spec": {"timeout": "1m"}},
            ),
            c.patch(
                ns_path(RUNS, ns, "effectclaims", name),
                headers=MERGE,  # no patch on claims
                json={"spec": {"holderIdentity": "x"}},
            ),
            c.delete(ns_path(RUNS, ns, "effectclaims", name)),
            c.get(ns_path(RUNS, ns, "effectclaims")),
            c.post(ns_path(RUNS, ns, "storytriggers"), json={}),  # StartStory needs extra rules
            c.get(ns_path(CORE, ns, "stories", "story")),  # no stories get
            c.get(ns_path(RUNS, "default", "stepruns", sr)),  # other namespace
        ]
    for r in denied:
        assert r.status_code == 403, (
            r.request.method,
            r.request.url.path,
            r.status_code,
            r.text[:300],
        )
        assert r.json()["reason"] == "Forbidden"
        assert me.username in r.json()["message"]


def test_impulse_identity_has_exactly_the_operators_impulse_role(
    controlplane: ControlPlane, k8s_namespace: str, impulse_identity: rbac.Identity
) -> None:
    ns = k8s_namespace
    me = impulse_identity
    assert me.username == f"system:serviceaccount:{ns}:hook-impulse-runner"
    with controlplane.client() as admin:
        role = ok(admin.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{me.role}"))
        assert ("Impulse", "hook") in _owner_kinds(role)
        create(
            admin,
            ns,
            RUNS,
            "storyruns",
            {
                "kind": "StoryRun",
                "metadata": {"name": "run-a"},
                "spec": {"storyRef": {"name": "story"}},
            },
        )
    with controlplane.client(token=me.token) as c:
        name = identity.derive_story_trigger_name(ns, "story", "", "x")
        trig = {
            "apiVersion": "runs.bubustack.io/v1alpha1",
            "kind": "StoryTrigger",
            "metadata": {"name": name},
            "spec": {
                "storyRef": {"name": "story"},
                "deliveryIdentity": {"mode": "none", "submissionId": "x"},
            },
        }
        ok(c.post(ns_path(RUNS, ns, "storytriggers"), json=trig))
        ok(c.get(ns_path(RUNS, ns, "storytriggers", name)))
        ok(c.get(ns_path(RUNS, ns, "storyruns")))
        ok(
            c.patch(
                ns_path(RUNS, ns, "storyruns", "run-a"),
                headers=MERGE,
                json={"spec": {"cancelRequested": True}},
            )
        )
        ok(
            c.patch(
                ns_path(CORE, ns, "impulses", "hook", "status"),
                headers=MERGE,
                json={"status": {"throttledTriggers": 1}},
            )
        )
        denied = [
            c.get(ns_path(RUNS, ns, "storytriggers")),
            c.delete(ns_path(RUNS, ns, "storytriggers", name)),
            c.post(ns_path(RUNS, ns, "storyruns"), json={}),
            c.patch(
                ns_path(CORE, ns, "impulses", "hook"),
                headers=MERGE,
                json={"spec": {"version": "2"}},
            ),
            c.get(ns_path(CORE, ns, "impulses")),
            c.get(ns_path(RUNS, ns, "stepruns", "x")),
        ]
    for r in denied:
        assert r.status_code == 403, (r.request.method, r.request.url.path, r.status_code)
        assert me.username in r.json()["message"]


#: the plumbing tests' own Role (tokens, kubeconfigs, the proxy), not the operator's: they run
#: before the operator starts, on StepRuns they make themselves
OWN_RULES = [
    {"apiGroups": ["runs.bubustack.io"], "resources": ["stepruns"], "verbs": ["get", "watch"]},
    {"apiGroups": ["runs.bubustack.io"], "resources": ["stepruns/status"], "verbs": ["patch"]},
]


async def test_kr8s_reads_the_generated_kubeconfigs(
    controlplane: ControlPlane, k8s_namespace: str, make_identity: Callable[..., rbac.Identity]
) -> None:
    import kr8s
    from kr8s.asyncio.objects import new_class

    StepRun = new_class(kind="StepRun", version="runs.bubustack.io/v1alpha1", namespaced=True)
    with controlplane.client() as admin:
        make_steprun(admin, k8s_namespace)

    async with kr8s_api(controlplane.admin_kubeconfig) as admin_api:
        version = await admin_api.version()
        assert version["gitVersion"].startswith("v1.")
        names = [n.name async for n in admin_api.get("namespaces")]
        assert k8s_namespace in names

    async with kr8s_api(make_identity(OWN_RULES).kubeconfig_path) as sa_api:
        assert sa_api.namespace == k8s_namespace
        # kr8s's StepRun.get(name) is a LIST call, which the runner Role does not allow;
        # refresh() is a plain GET.
        sr = StepRun({"metadata": {"name": "run-a-start", "namespace": k8s_namespace}}, api=sa_api)
        await sr.refresh()
        with pytest.raises(kr8s.ServerError) as err:
            await StepRun.get("run-a-start", namespace=k8s_namespace, api=sa_api)
        assert err.value.response is not None and err.value.response.status_code == 403
        await sr.patch({"status": {"retries": 0, "phase": "Succeeded"}}, subresource="status")
        await sr.refresh()
        assert sr.raw["status"]["phase"] == "Succeeded"
        with pytest.raises(kr8s.ServerError) as err:
            await sr.delete()
        assert err.value.response is not None and err.value.response.status_code == 403


# --------------------------------------------------------------------------- fault proxy


@contextlib.asynccontextmanager
async def kr8s_api(kubeconfig: object) -> AsyncIterator[Any]:
    """A kr8s API for ``kubeconfig`` whose HTTP session is closed afterwards.

    kr8s has no public close(); an unclosed session leaks sockets, and the
    ResourceWarning is an error under ``filterwarnings = error``.
    """
    import kr8s.asyncio

    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    try:
        yield api
    finally:
        if api._session is not None:
            await api._session.aclose()


def retrying(
    send: Callable[[], httpx.Response], *, attempts: int = 5
) -> tuple[httpx.Response, list[int]]:
    """Minimal client-side retry: retry 409/429/5xx, honouring Retry-After (capped)."""
    codes = []
    for _ in range(attempts):
        r = send()
        codes.append(r.status_code)
        if r.status_code not in (409, 429) and r.status_code < 500:
            return r, codes
        time.sleep(min(float(r.headers.get("Retry-After", "0.05")), 1.0))
    return r, codes


def test_fault_proxy_conflict_then_success(
    controlplane: ControlPlane, k8s_namespace: str, fault_proxy: FaultProxy
) -> None:
    ns = k8s_namespace
    with controlplane.client() as admin:
        make_steprun(admin, ns)
    fault = fault_proxy.conflict("PATCH", r"/stepruns/run-a-start/status$", times=2)
    with httpx.Client(base_url=fault_proxy.url) as c:  # no credentials: proxied as admin
        r, codes = retrying(
            lambda: c.patch(
                ns_path(RUNS, ns, "stepruns", "run-a-start", "status"),
                headers=MERGE,
                json={"status": {"retries": 0, "phase": "Succeeded"}},
            )
        )
        assert codes == [409, 409, 200]
        assert r.json()["status"]["phase"] == "Succeeded"
        assert fault.hits == 2 and fault.exhausted
        # the injected body is a proper Status
        fault_proxy.conflict("GET", r"/stepruns/run-a-start$")
        body = c.get(ns_path(RUNS, ns, "stepruns", "run-a-start")).json()
    assert body["kind"] == "Status" and body["reason"] == "Conflict" and body["code"] == 409
    assert body["details"] == {
        "group": "runs.bubustack.io",
        "kind": "stepruns",
        "name": "run-a-start",
    }
    assert "the object has been modified" in body["message"]
    assert [(s.method, s.status) for s in fault_proxy.requests][:3] == [
        ("PATCH", 409),
        ("PATCH", 409),
        ("PATCH", 200),
    ]


def test_fault_proxy_500_429_delay_and_disconnect(
    controlplane: ControlPlane, k8s_namespace: str, fault_proxy: FaultProxy
) -> None:
    ns = k8s_namespace
    path = ns_path(RUNS, ns, "stepruns")
    fault_proxy.server_error("POST", r"/stepruns$")
    fault_proxy.throttle("POST", r"/stepruns$", retry_after=1)
    body = {
        "apiVersion": "runs.bubustack.io/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": "s1"},
        "spec": {"storyRunRef": {"name": "run-a"}, "stepId": "start"},
    }
    with httpx.Client(base_url=fault_proxy.url) as c:
        first = c.post(path, json=body)
        assert first.status_code == 500 and first.json()["reason"] == "InternalError"
        throttled = c.post(path, json=body)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "1"
        assert throttled.json()["details"]["retryAfterSeconds"] == 1
        assert c.post(path, json=body).status_code == 201  # faults exhausted: forwarded
        # delay: held, then forwarded
        fault_proxy.delay("GET", r"/stepruns/s1$", 0.3)
        t0 = time.monotonic()
        assert c.get(f"{path}/s1").status_code == 200
        assert time.monotonic() - t0 >= 0.3
        # skip: let the first matching request through, fail the second
        fault_proxy.fail("GET", r"/stepruns/s1$", 503, skip=1)
        assert c.get(f"{path}/s1").status_code == 200
        assert c.get(f"{path}/s1").status_code == 503
        # disconnect: the client sees a transport error, the next request works
        fault_proxy.disconnect("GET", r"/stepruns/s1$")
        with pytest.raises(httpx.TransportError):
            c.get(f"{path}/s1")
        assert c.get(f"{path}/s1").status_code == 200


async def test_fault_proxy_forwards_tokens_and_watches(
    controlplane: ControlPlane,
    k8s_namespace: str,
    fault_proxy: FaultProxy,
    make_identity: Callable[..., rbac.Identity],
) -> None:
    ns = k8s_namespace
    with controlplane.client() as admin:
        obj = make_steprun(admin, ns)
    headers = {"Authorization": f"Bearer {make_identity(OWN_RULES).token}"}
    async with httpx.AsyncClient(base_url=fault_proxy.url, headers=headers, timeout=10) as c:
        # RBAC still applies through the proxy (the token is forwarded, not the admin cert)
        assert (await c.get(ns_path(RUNS, ns, "stepruns"))).status_code == 403
        assert (await c.get(ns_path(RUNS, ns, "stepruns", "run-a-start"))).status_code == 200
        params = {
            "watch": "1",
            "fieldSelector": "metadata.name=run-a-start",
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "timeoutSeconds": "10",
        }
        async with c.stream("GET", ns_path(RUNS, ns, "stepruns"), params=params) as w:
            assert w.status_code == 200
            await c.patch(
                ns_path(RUNS, ns, "stepruns", "run-a-start", "status"),
                headers=MERGE,
                json={"status": {"retries": 0, "phase": "Succeeded"}},
            )
            async for line in w.aiter_lines():
                if line:
                    ev = json.loads(line)
                    if ev["object"]["status"].get("phase") == "Succeeded":
                        break
        assert ev["type"] == "MODIFIED"


async def test_kr8s_through_the_fault_proxy(
    controlplane: ControlPlane,
    k8s_namespace: str,
    fault_proxy: FaultProxy,
    make_identity: Callable[..., rbac.Identity],
) -> None:
    import kr8s
    from kr8s.asyncio.objects import new_class

    StepRun = new_class(kind="StepRun", version="runs.bubustack.io/v1alpha1", namespaced=True)
    with controlplane.client() as admin:
        make_steprun(admin, k8s_namespace)
    token = make_identity(OWN_RULES).token
    kubeconfig = fault_proxy.kubeconfig(token=token, namespace=k8s_namespace)
    async with kr8s_api(kubeconfig) as api:
        fault_proxy.conflict("PATCH", r"/stepruns/run-a-start/status$")
        sr = StepRun({"metadata": {"name": "run-a-start", "namespace": k8s_namespace}}, api=api)
        await sr.refresh()
        with pytest.raises(kr8s.ServerError) as err:
            await sr.patch({"status": {"retries": 0, "phase": "Succeeded"}}, subresource="status")
        assert err.value.response is not None and err.value.response.status_code == 409
        assert isinstance(err.value.status, dict) and err.value.status["reason"] == "Conflict"
        await sr.patch({"status": {"retries": 0, "phase": "Succeeded"}}, subresource="status")
        assert sr.raw["status"]["phase"] == "Succeeded"
    # admin through the proxy: a kubeconfig without credentials
    async with kr8s_api(fault_proxy.kubeconfig()) as admin_api:
        selector = f"metadata.name={k8s_namespace}"
        found = [n.name async for n in admin_api.get("namespaces", field_selector=selector)]
    assert found == [k8s_namespace]
