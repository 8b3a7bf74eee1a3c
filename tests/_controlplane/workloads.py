"""What the real operator makes of BubuStack objects: workloads, their identities and env.

The operator (``operator.Operator``) turns a StoryRun into StepRuns, a Job per engram step and
a ``<storyRun>-engram-runner`` ServiceAccount bound to a Role it generates; an Impulse into a
Deployment and a ``<impulse>-impulse-runner`` ServiceAccount with its Role. Without a kubelet
or scheduler those Jobs and Deployments never get pods, so the test process plays the pod: it
authenticates as the operator-made ServiceAccount (``operator_identity``: a TokenRequest token
for it, the rules read back from the operator's Role) and can read the env the operator put in
the pod template (``pod_env``).

``seed(...)`` creates the cluster-scoped templates once per control plane, then the namespaced
Engram / Story / Impulse / StoryRun the tests name. Every wait is a watch, not a sleep loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

from . import rbac

if TYPE_CHECKING:
    from .server import ControlPlane

RUNS_GROUP = "runs.bubustack.io"
RUNS = f"/apis/{RUNS_GROUP}/v1alpha1"
CORE = "/apis/bubustack.io/v1alpha1"
CATALOG = "/apis/catalog.bubustack.io/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"

#: cluster-scoped templates shared by every test of a session (never changed once made)
ENGRAM_TEMPLATE = "bubu-test-engram"
STREAMING_TEMPLATE = "bubu-test-streaming-engram"
IMPULSE_TEMPLATE = "bubu-test-impulse"
#: an EngramTemplate whose engrams start Stories: it declares the rules for that, which the
#: operator merges into each engram-runner Role it generates (the rules are the template
#: author's input, as a user would write them; the Role is the operator's output)
STARTER_TEMPLATE = "bubu-test-starter-engram"
STARTER_RULES = [
    {"apiGroups": [RUNS_GROUP], "resources": ["storytriggers"], "verbs": ["create", "get"]},
    {"apiGroups": [RUNS_GROUP], "resources": ["storyruns"], "verbs": ["get"]},
]
#: an image reference that is never pulled (nothing runs pods here)
IMAGE = "example.invalid/bubu-test:0"

Predicate = Callable[[dict[str, Any]], bool]


def _ok(r: httpx.Response, what: str) -> dict[str, Any]:
    if r.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {r.status_code}: {r.text[:1000]}")
    body: dict[str, Any] = r.json()
    return body


def _create(c: httpx.Client, collection: str, body: dict[str, Any], *, exist_ok: bool) -> None:
    r = c.post(collection, json=body)
    if r.status_code == 409 and exist_ok:
        return
    _ok(r, f"creating {body['kind']} {body['metadata']['name']}")


def _brief(obj: dict[str, Any] | None) -> str:
    """An object for an error message: status first, no managedFields, cut at 3000 chars."""
    if obj is None:
        return "not found"
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    shown = {"status": obj.get("status"), "spec": obj.get("spec"), "metadata": meta}
    return json.dumps(shown)[:3000]


def ensure_templates(c: httpx.Client) -> None:
    """The EngramTemplates (a batch one and a streaming one) and the ImpulseTemplate."""
    for name, modes, rules in (
        (ENGRAM_TEMPLATE, ["job"], None),
        (STREAMING_TEMPLATE, ["deployment"], None),
        (STARTER_TEMPLATE, ["job"], STARTER_RULES),
    ):
        spec: dict[str, Any] = {"version": "1.0.0", "supportedModes": modes, "image": IMAGE}
        if rules:
            spec["execution"] = {"rbac": {"rules": rules}}
        body = {
            "apiVersion": "catalog.bubustack.io/v1alpha1",
            "kind": "EngramTemplate",
            "metadata": {"name": name},
            "spec": spec,
        }
        _create(c, f"{CATALOG}/engramtemplates", body, exist_ok=True)
    body = {
        "apiVersion": "catalog.bubustack.io/v1alpha1",
        "kind": "ImpulseTemplate",
        "metadata": {"name": IMPULSE_TEMPLATE},
        "spec": {"version": "1.0.0", "supportedModes": ["deployment"], "image": IMAGE},
    }
    _create(c, f"{CATALOG}/impulsetemplates", body, exist_ok=True)


def engram_template(
    name: str, *, rbac_rules: list[dict[str, Any]] | None = None, modes: tuple[str, ...] = ("job",)
) -> dict[str, Any]:
    """A cluster-scoped EngramTemplate; ``rbac_rules`` go to ``execution.rbac.rules``, which the
    operator merges into the engram-runner Role of every StoryRun that uses the template."""
    spec: dict[str, Any] = {"version": "1.0.0", "supportedModes": list(modes), "image": IMAGE}
    if rbac_rules:
        spec["execution"] = {"rbac": {"rules": rbac_rules}}
    return {
        "apiVersion": "catalog.bubustack.io/v1alpha1",
        "kind": "EngramTemplate",
        "metadata": {"name": name},
        "spec": spec,
    }


def engram(
    name: str = "engram",
    *,
    template: str = ENGRAM_TEMPLATE,
    mode: str | None = None,
    rbac_rules: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"templateRef": {"name": template}}
    if mode:
        spec["mode"] = mode
    if rbac_rules:
        spec["overrides"] = {"rbac": {"rules": rbac_rules}}
    return {
        "apiVersion": "bubustack.io/v1alpha1",
        "kind": "Engram",
        "metadata": {"name": name},
        "spec": spec,
    }


def story(
    name: str = "story", steps: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    """A Story; by default one engram step ``step-a`` running Engram ``engram`` as a Job."""
    return {
        "apiVersion": "bubustack.io/v1alpha1",
        "kind": "Story",
        "metadata": {"name": name},
        "spec": {"steps": steps or [{"name": "step-a", "ref": {"name": "engram"}}], **spec},
    }


def impulse(
    name: str = "hook", story: str = "story", *, rbac_rules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"templateRef": {"name": IMPULSE_TEMPLATE}, "storyRef": {"name": story}}
    if rbac_rules:
        spec["execution"] = {"rbac": {"rules": rbac_rules}}
    return {
        "apiVersion": "bubustack.io/v1alpha1",
        "kind": "Impulse",
        "metadata": {"name": name},
        "spec": spec,
    }


def story_run(name: str, story: str = "story", inputs: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"storyRef": {"name": story}}
    if inputs is not None:
        spec["inputs"] = inputs
    return {
        "apiVersion": "runs.bubustack.io/v1alpha1",
        "kind": "StoryRun",
        "metadata": {"name": name},
        "spec": spec,
    }


_COLLECTIONS = {
    "EngramTemplate": CATALOG + "/engramtemplates",
    "Engram": CORE + "/namespaces/{ns}/engrams",
    "Story": CORE + "/namespaces/{ns}/stories",
    "Impulse": CORE + "/namespaces/{ns}/impulses",
    "StoryRun": RUNS + "/namespaces/{ns}/storyruns",
}


def seed(cp: ControlPlane, namespace: str, *objects: dict[str, Any]) -> None:
    """Create the templates (once) and ``objects`` in ``namespace`` as admin; an object that
    already exists is left as it is (fixtures and tests may seed the same Story)."""
    with cp.client() as c:
        ensure_templates(c)
        for obj in objects:
            _create(c, _COLLECTIONS[obj["kind"]].format(ns=namespace), obj, exist_ok=True)


# --------------------------------------------------------------------------- waiting


def wait_object(
    c: httpx.Client,
    collection: str,
    name: str,
    predicate: Predicate = lambda obj: True,
    *,
    timeout: float = 30.0,
    what: str = "",
) -> dict[str, Any]:
    """Read ``collection/name`` until ``predicate`` holds, waiting on a watch between reads."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    selector = f"metadata.name={name}"
    while True:
        # A LIST by name is one consistent snapshot: the object (or its absence) and the
        # resourceVersion to watch from, so nothing created in between is missed.
        listing = _ok(c.get(collection, params={"fieldSelector": selector}), f"LIST {collection}")
        items = listing.get("items") or []
        if items:
            last = dict(items[0])
            if predicate(last):
                return last
        rv = listing["metadata"]["resourceVersion"]
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what or name}; last seen: "
                f"{_brief(last)}"
            )
        params = {
            "watch": "1",
            "fieldSelector": selector,
            "resourceVersion": rv,
            "timeoutSeconds": str(max(1, int(left))),
        }
        with c.stream("GET", collection, params=params, timeout=left + 5) as w:
            for line in w.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    last = dict(event["object"])
                    if predicate(last):
                        return last
                elif event.get("type") in ("DELETED", "ERROR"):
                    break  # list again


async def await_object(
    cp: ControlPlane,
    collection: str,
    name: str,
    predicate: Predicate = lambda obj: True,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - the deadline of a watch, not a cancel scope
    what: str = "",
) -> dict[str, Any]:
    """``wait_object`` for async tests: the same loop on the admin client, in a worker thread
    so the test's event loop keeps running while it waits."""

    def wait() -> dict[str, Any]:
        with cp.client() as c:
            return wait_object(c, collection, name, predicate, timeout=timeout, what=what)

    return await asyncio.to_thread(wait)


def collection(kind: str, namespace: str) -> str:
    """The API path of a namespaced BubuStack collection, e.g. ``collection("storyruns", ns)``."""
    group = {
        "storyruns": RUNS,
        "stepruns": RUNS,
        "storytriggers": RUNS,
        "effectclaims": RUNS,
        "stories": CORE,
        "engrams": CORE,
        "impulses": CORE,
    }[kind]
    return f"{group}/namespaces/{namespace}/{kind}"


async def watch_collection(
    http: httpx.AsyncClient, kind: Any, namespace: str, *, poll_interval: float = 0.02
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ``(type, object)`` for every change in a collection (``kind`` is a
    ``bubu._k8s.resources.Kind``): LIST first, then watch; LIST again when a watch ends."""
    path = kind.path(namespace=namespace)
    while True:
        r = await http.get(path)
        r.raise_for_status()
        listing = r.json()
        for item in listing.get("items") or []:
            yield "ADDED", item
        rv = (listing.get("metadata") or {}).get("resourceVersion")
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
        try:
            async with http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30, read=None)
            ) as resp:
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        break
                    if event.get("type") != "BOOKMARK":
                        yield event["type"], event["object"]
        except (httpx.TransportError, httpx.HTTPStatusError):
            pass  # the watch ended: list again
        await asyncio.sleep(poll_interval)


def operator_identity(
    cp: ControlPlane, namespace: str, service_account: str, *, timeout: float = 60.0
) -> rbac.Identity:
    """Act as a ServiceAccount the operator made: wait for its Role and RoleBinding, then mint
    a token for it. ``rules`` are read back from the operator's Role."""
    with cp.client() as c:
        wait_object(
            c,
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            service_account,
            timeout=timeout,
            what=f"the operator's ServiceAccount {namespace}/{service_account}",
        )
        role = wait_object(
            c,
            f"{RBAC}/namespaces/{namespace}/roles",
            service_account,
            timeout=timeout,
            what=f"the operator's Role {namespace}/{service_account}",
        )
        wait_object(
            c,
            f"{RBAC}/namespaces/{namespace}/rolebindings",
            service_account,
            lambda rb: any(s.get("name") == service_account for s in rb.get("subjects") or []),
            timeout=timeout,
            what=f"the operator's RoleBinding {namespace}/{service_account}",
        )
        token = rbac.issue_token(c, namespace, service_account)
    assert cp.workdir is not None
    directory = cp.workdir / "kubeconfigs"
    directory.mkdir(parents=True, exist_ok=True)
    path = cp.write_kubeconfig(
        directory / f"{namespace}.{service_account}.kubeconfig", token=token, namespace=namespace
    )
    return rbac.Identity(
        namespace, service_account, service_account, path, token, tuple(role["rules"])
    )


def engram_runner(cp: ControlPlane, namespace: str, story_run: str) -> rbac.Identity:
    """The identity the operator gives the engram pods of ``story_run``."""
    return operator_identity(cp, namespace, f"{story_run}-engram-runner")


def impulse_runner(cp: ControlPlane, namespace: str, impulse: str) -> rbac.Identity:
    """The identity the operator gives the pods of Impulse ``impulse``."""
    return operator_identity(cp, namespace, f"{impulse}-impulse-runner")


def step_run(
    cp: ControlPlane,
    namespace: str,
    name: str,
    predicate: Predicate = lambda obj: bool((obj.get("status") or {}).get("phase")),
    *,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """The StepRun ``name`` once the operator made it (and gave it a phase, by default)."""
    with cp.client() as c:
        return wait_object(
            c,
            f"{RUNS}/namespaces/{namespace}/stepruns",
            name,
            predicate,
            timeout=timeout,
            what=f"StepRun {namespace}/{name}",
        )


def wait_storyrun(
    cp: ControlPlane,
    namespace: str,
    name: str,
    phase: str,
    *,
    steps: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """StoryRun ``name`` once the operator gave it ``phase`` and, per step in ``steps``, that
    step's phase in ``status.stepStates`` (the operator may set the run's phase first)."""

    def done(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        states = status.get("stepStates") or {}
        return status.get("phase") == phase and all(
            (states.get(step) or {}).get("phase") == want for step, want in (steps or {}).items()
        )

    with cp.client() as c:
        return wait_object(
            c,
            f"{RUNS}/namespaces/{namespace}/storyruns",
            name,
            done,
            timeout=timeout,
            what=f"StoryRun {namespace}/{name} in phase {phase} (steps {steps or {}})",
        )


def job_uid(cp: ControlPlane, namespace: str, name: str) -> str:
    """The uid of Job ``name`` (once it exists)."""
    with cp.client() as c:
        jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        job = wait_object(c, jobs, name, what=f"Job {namespace}/{name}")
    return str(job["metadata"]["uid"])


def pod_env(
    cp: ControlPlane, namespace: str, workload: str, *, kind: str = "Job", pod_name: str = ""
) -> dict[str, str]:
    """The env the operator put in ``workload``'s pod template, with the downward-API fields
    a kubelet would fill in (pod name, namespace, service account). Secret references are
    left out: the test passes secrets itself."""
    path = {
        "Job": f"/apis/batch/v1/namespaces/{namespace}/jobs",
        "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments",
    }[kind]
    with cp.client() as c:
        obj = wait_object(c, path, workload, timeout=60, what=f"{kind} {namespace}/{workload}")
    pod = obj["spec"]["template"]["spec"]
    fields = {
        "metadata.name": pod_name or f"{workload}-pod",
        "metadata.namespace": namespace,
        "spec.serviceAccountName": pod.get("serviceAccountName", ""),
    }
    env: dict[str, str] = {}
    for var in pod["containers"][0].get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = var.get("value", "")
        elif "fieldRef" in source:
            env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
    return env
